"""`run(...) -> Result`: plan the workers, start them together, watch the server, merge.

The parent process only coordinates: it spawns the workers (fresh interpreters, so nothing of the
caller's threads or event loop leaks into them), waits until each has its connections open, gives
them one common start instant, and while they load the server it samples the server's CPU and
memory at the edges of the measured window and redraws the progress line.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import signal
import socket
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from time import perf_counter_ns

from iomodels.bench import export, report, worker
from iomodels.bench.errors import MAX_DURATION, MAX_WARMUP, BenchError, UsageError
from iomodels.addresses import is_loopback
from iomodels.bench.idle import FD_MARGIN, SourcePlan
from iomodels.bench.payload import Size
from iomodels.bench.result import Result, merge
from iomodels.bench.server_watch import ServerWatch

START_DELAY_NS = 100_000_000  # time for the start command to reach every worker
DONE_GRACE = 30.0  # seconds after the end for workers to close and report


def run(host: str, port: int, connections: int = 10, size: int | str | tuple[int, int] = 64,
        pipeline: int = 1, duration: float = 10.0, warmup: float = 1.0, rate: float | None = None,
        idle: int = 0, workers: int | str = 1, connect_per_request: bool = False,
        server_pid: int | None = None, progress: bool = False, allow_remote: bool = False,
        keep_partial: bool = False) -> Result:
    """Load the uppercase-echo server at host:port and measure it (see `iomodels bench --help`).

    Raises UsageError for arguments that cannot work and BenchError when the run cannot happen
    (nothing could connect, limits too low); failures during the run are counted in the Result.
    Workers are spawned interpreters: a script calling this needs the usual multiprocessing guard,
    `if __name__ == "__main__":`. Only loopback targets, unless `allow_remote`. Ctrl-C
    (KeyboardInterrupt) propagates, unless `keep_partial`: then, once the load has started, the
    workers stop and the Result of what they measured until then comes back, marked `partial`
    (further Ctrl-Cs while they report are ignored: an impatient second one must not lose the
    first one's results; SIGINT's handler is the caller's again on return).
    """
    options = _validate(host, port, connections, Size.parse(size), pipeline, duration, warmup, rate, idle,
                        workers, connect_per_request, allow_remote)
    watch = ServerWatch(server_pid) if server_pid is not None else None
    specs, plan = _plan(options)
    display = report.LiveProgress(progress)
    pool = _Workers()
    try:
        pool.start(specs)
        ready = pool.collect("ready", 60 + (options["idle"] + options["connections"]) / 200)
        if not sum(r["connected"] for r in ready):
            reasons = {reason for r in ready for reason in r["connect_reasons"]}
            raise BenchError(f"cannot connect to {host}:{port}: {', '.join(sorted(reasons)) or 'no connection'}")
        with _CtrlC(keep_partial) as ctrl_c:
            t0 = perf_counter_ns() + START_DELAY_NS
            pool.send_all(("start", t0))
            own_cpu, server, interrupted = _watch(pool, display, watch, options, t0, ctrl_c)
            if interrupted and not keep_partial:
                raise KeyboardInterrupt
            if interrupted:  # Ctrl-C: every worker ends now and reports what it measured
                pool.send_all(("stop",))
            done = pool.collect("done", DONE_GRACE)
    finally:
        display.close()
        pool.close()
    notes = [note for note in [options.pop("remote_warning"), plan.describe()] if note]
    result = merge(options, ready, done, own_cpu, server, notes)
    measure_start_epoch = time.time() - (perf_counter_ns() - t0) / 1e9 + options["warmup"]
    result.about = export.about({**options, "allow_remote": allow_remote, "server_pid": server_pid},
                                measure_start_epoch)
    return result


class _CtrlC:
    """With `keep`, SIGINT only sets `pressed` (which the watch loop reads every TICK) instead of
    raising KeyboardInterrupt wherever the parent happens to be; the previous handler is restored
    on exit. Without `keep`, or outside the main thread, nothing changes."""

    def __init__(self, keep: bool):
        self.keep, self.pressed, self.installed, self.previous = keep, False, False, None

    def __enter__(self) -> _CtrlC:
        if self.keep and threading.current_thread() is threading.main_thread():
            self.previous, self.installed = signal.signal(signal.SIGINT, self._press), True
        return self

    def _press(self, signum, frame) -> None:
        self.pressed = True

    def __exit__(self, *exc) -> None:
        if self.installed:  # None: the handler was not Python's, the default is the closest we can give back
            signal.signal(signal.SIGINT, signal.SIG_DFL if self.previous is None else self.previous)


def check_target(host: str, port: int, allow_remote: bool) -> tuple[str, str | None]:
    """The address to load and, for a remote one the user allowed, the warning to show.
    Resolves the name, sends nothing."""
    if not 0 < port < 65536:
        raise UsageError(f"port must be from 1 to 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc}") from None
    address = infos[0][4][0]
    if is_loopback(address):
        return address, None
    shown = host if host == address else f"{host} ({address})"
    if not allow_remote:
        raise UsageError(f"refusing to load {shown}: this tool only loads the local machine (127.0.0.0/8 "
                         f"or ::1) unless told --allow-remote")
    return address, (f"--allow-remote: loading {shown}, another machine: make sure it is yours to load, "
                     f"and that the network between is not what you end up measuring")


def _validate(host, port, connections, size, pipeline, duration, warmup, rate, idle, workers, cpr,
              allow_remote=False) -> dict:
    address, remote = check_target(host, port, allow_remote)
    checks = [
        (1 <= connections <= 1_000_000, f"connections must be from 1 to 1000000, not {connections}"),
        (1 <= pipeline <= 65536, f"pipeline must be from 1 to 65536, not {pipeline}"),
        (0 < duration <= MAX_DURATION, f"duration must be > 0 and at most {MAX_DURATION:g} s, not {duration}"),
        (0 <= warmup <= MAX_WARMUP, f"warmup must be from 0 to {MAX_WARMUP:g} s, not {warmup}"),
        (rate is None or 0 < rate <= 10_000_000, f"rate must be > 0 and at most 10000000 per second, not {rate}"),
        (0 <= idle <= 10_000_000, f"idle must be from 0 to 10000000, not {idle}"),
        (not (cpr and pipeline > 1), "--connect-per-request sends one message per connection: no --pipeline"),
        (not (rate and pipeline > 1), "--rate is an open loop, one message per send on a timetable: no --pipeline "
                                      "(to keep N in flight, leave --rate out)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if workers == "auto":
        workers = max(1, (os.cpu_count() or 2) - 1)
    if not isinstance(workers, int) or not 1 <= workers <= 256:
        raise UsageError(f"workers must be from 1 to 256 or 'auto', not {workers!r}")
    return {"host": address, "port": port, "connections": connections, "size": size, "pipeline": pipeline,
            "duration": float(duration), "warmup": float(warmup), "rate": rate, "idle": idle,
            "workers": min(workers, connections), "connect_per_request": cpr, "remote_warning": remote}


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _plan(options: dict) -> tuple[list[worker.WorkerSpec], SourcePlan]:
    count, idle, active = options["workers"], options["idle"], options["connections"]
    persistent = 0 if options["connect_per_request"] else active
    plan = SourcePlan(options["host"], idle + persistent)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    idle_shares, active_shares = _shares(idle, count), _shares(active, count)
    per_worker = max(idle_shares) + (max(active_shares) if persistent else 0) + FD_MARGIN
    if hard != resource.RLIM_INFINITY and per_worker > hard:
        need = math.ceil((idle + persistent) / (hard - FD_MARGIN)) if hard > FD_MARGIN else "more"
        raise BenchError(f"{idle + persistent} connections over {count} worker(s) need about {per_worker} file "
                         f"descriptors per worker, but RLIMIT_NOFILE allows {hard} (hard limit): raise it "
                         f"(ulimit -Hn, /etc/security/limits.conf) or use --workers {need}")
    specs, first_idle, first_active = [], 0, idle
    for index in range(count):
        share = active_shares[index]
        specs.append(worker.WorkerSpec(
            index=index, host=options["host"], port=options["port"], connections=share,
            first_connection=first_active, idle=idle_shares[index], first_idle=first_idle,
            size=options["size"], pipeline=options["pipeline"],
            rate=None if options["rate"] is None else options["rate"] * share / active,
            connect_per_request=options["connect_per_request"], warmup=options["warmup"],
            duration=options["duration"], total_connections=idle + persistent))
        first_idle += idle_shares[index]
        first_active += share
    return specs, plan


class _Workers:
    """The worker processes and the parent's end of their pipes."""

    def __init__(self):
        self.processes, self.pipes = [], []
        self.early: dict[int, tuple] = {}  # a message read ahead of its turn, by worker index

    def start(self, specs: list[worker.WorkerSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        for spec in specs:
            ours, theirs = context.Pipe()
            process = context.Process(target=worker.main, args=(spec, theirs), daemon=True,
                                      name=f"iomodels-bench-{spec.index}")
            process.start()
            theirs.close()
            self.processes.append(process)
            self.pipes.append(ours)

    def send_all(self, message) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(message)
            except (BrokenPipeError, ConnectionResetError):  # that worker is gone: receive() says why
                pass

    def receive(self, pipe) -> tuple:
        """A worker's next message; its failure to run becomes a BenchError."""
        index = self.pipes.index(pipe)
        if index in self.early:
            return self.early.pop(index)
        try:
            message = pipe.recv()
        except EOFError:
            process = self.processes[index]
            process.join(1)
            how = (f"was killed by signal {-process.exitcode}" if process.exitcode and process.exitcode < 0
                   else f"exited with status {process.exitcode} (its error is above)")
            raise BenchError(f"bench worker {index} {how}") from None
        if message[0] == "error":
            raise BenchError(message[1])
        return message

    def collect(self, kind: str, timeout: float) -> list[dict]:
        """The next `kind` message of every worker (progress messages in between are skipped)."""
        results: dict[int, dict] = {}
        deadline = perf_counter_ns() + int(timeout * 1e9)
        while len(results) < len(self.pipes):
            ready = [self.pipes[i] for i in self.early if i not in results]
            if not ready:
                waiting = [pipe for i, pipe in enumerate(self.pipes) if i not in results]
                left = (deadline - perf_counter_ns()) / 1e9
                ready = wait(waiting, left) if left > 0 else []
                if not ready:
                    raise BenchError(f"{len(waiting)} bench worker(s) sent no '{kind}' within {timeout:.0f} s")
            for pipe in ready:
                message = self.receive(pipe)
                if message[0] == kind:
                    results[self.pipes.index(pipe)] = message[1]
        return [results[i] for i in range(len(self.pipes))]

    def close(self) -> None:
        for pipe in self.pipes:  # a worker still waiting for "start" reads EOF and closes its connections
            pipe.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join()


def _watch(pool: _Workers, display, watch: ServerWatch | None, options: dict, t0: int, ctrl_c: _CtrlC):
    """Until the end (or Ctrl-C): show progress; sample our own and the server's CPU at the window's
    edges. Returns (our CPU, the server's figures or None, whether it was interrupted)."""
    edges: dict[str, tuple] = {}
    try:
        _watch_until_end(pool, display, watch, options, t0, edges, ctrl_c)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
        now = (perf_counter_ns(), worker.cpu_seconds(), watch.cpu_seconds() if watch else 0.0)
        edges.setdefault("start", now)
        edges["end"] = now
    (t_start, cpu_start, server_start), (t_end, cpu_end, server_end) = edges["start"], edges["end"]
    seconds = max(1e-9, (t_end - t_start) / 1e9)
    server = None
    if watch:
        server = {"cpu": (server_end - server_start) / seconds, "cpu_seconds": server_end - server_start,
                  "rss": watch.peak_rss}
    return (cpu_end - cpu_start) / seconds, server, interrupted


def _watch_until_end(pool: _Workers, display, watch: ServerWatch | None, options: dict, t0: int,
                     edges: dict[str, tuple], ctrl_c: _CtrlC) -> None:
    warm_end = t0 + int(options["warmup"] * 1e9)
    end = warm_end + int(options["duration"] * 1e9)
    pipes = pool.pipes
    completed = [0] * len(pipes)
    samples = deque([(t0, 0)])  # (ns, requests completed): the live rate is over the last second
    while True:
        now = perf_counter_ns()
        for name, at in (("start", warm_end), ("end", end)):
            if now >= at and name not in edges:
                edges[name] = (now, worker.cpu_seconds(), watch.cpu_seconds() if watch else 0.0)
        if "end" in edges:
            break
        if ctrl_c.pressed:
            raise KeyboardInterrupt
        if watch and "start" in edges:
            watch.sample_rss()
        next_edge = warm_end if "start" not in edges else end
        for pipe in wait(pipes, max(0.0, min(worker.TICK, (next_edge - now) / 1e9))):
            message = pool.receive(pipe)
            if message[0] == "progress":
                completed[pipes.index(pipe)] = message[1]
            else:  # a worker's clock reached the end a moment before ours: keep its report
                pool.early[pipes.index(pipe)] = message
        now = perf_counter_ns()
        if now - samples[-1][0] >= worker.TICK * 1e9:
            samples.append((now, sum(completed)))
            while len(samples) > 2 and now - samples[1][0] >= 1e9:
                samples.popleft()
            (then, before), (_, total) = samples[0], samples[-1]
            display.update(max(0.0, (now - t0) / 1e9), options["warmup"] + options["duration"],
                           "warm-up" if now < warm_end else "measuring", (total - before) / ((now - then) / 1e9))
