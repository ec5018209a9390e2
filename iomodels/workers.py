"""`--workers N`: N processes serve one port, each running the model's own loop; a parent supervises.

Each worker opens its own listening socket on the same port with SO_REUSEPORT, and the kernel
spreads new connections over them by a hash of the connection's addresses: no shared accept queue,
no thundering herd, no lock. That is how nginx (`reuseport`) and many Go and Rust servers use
several cores with a single-threaded event loop each. The parent holds the port with a bound but
never listening socket (so `--port 0` is resolved once, and a restarted worker finds the same port),
restarts a worker that dies, forwards SIGTERM, and adds up the workers' counters, which each worker
publishes in its slot of shared memory twice a second.

On a machine with 2 cores, as ours, one core is needed by the load generator: N > 1 shows the
mechanism, not a speed-up. Scaling needs spare cores for the workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
import time

from iomodels import models, server
from iomodels.config import ConfigError, ServerConfig
from iomodels.stats import SharedCounters, Stats

PUBLISH_INTERVAL = 0.5
# A worker that keeps dying is a bug, not bad luck: stop restarting it.
MAX_RESTARTS, RESTART_WINDOW = 5, 10.0
_PR_SET_PDEATHSIG = 1


def supervise(config: ServerConfig) -> int:
    model = models.load(config.model)
    if not model.MODEL.multi_worker:
        raise ConfigError(f"--workers {config.workers}: model {config.model} runs as a single process; "
                          "only event-driven models can share a port between worker processes")
    server.configure_logging(config.log_level)
    anchor = _hold_port(config)
    config = config.replace(port=anchor.getsockname()[1])
    stats = Stats()
    counters = stats.children = SharedCounters(config.workers)
    stop = server.Stop(config.drain_timeout)
    server.handle_signals(stop, stats, config)
    pids: dict[int, int] = {}  # pid -> slot
    ready_read, ready_write = os.pipe()
    for slot in range(config.workers):
        pids[_start_worker(model, config, slot, counters, ready_write)] = slot
    if not _await_ready(ready_read, config.workers):
        server.stop_processes(pids, time.monotonic() + 1.0)
        raise ConfigError("the worker processes did not start listening; see the log above")
    os.close(ready_read)
    if config.metrics_port is not None:
        from iomodels import metrics
        metrics.serve_metrics(config.host, config.metrics_port, stats)
    server.log.info("%d workers share the port with SO_REUSEPORT", config.workers)
    print(f"listening on {config.host}:{config.port} (model {config.model})", flush=True)
    status = 0
    restarts: list[float] = []
    try:
        while not stop.wait(0.2):
            for pid, slot in _reap(pids):
                stats.add(counters.take(slot))  # keep what the dead worker counted
                restarts = [t for t in restarts if time.monotonic() - t < RESTART_WINDOW] + [time.monotonic()]
                if len(restarts) > MAX_RESTARTS:
                    server.log.error("workers keep dying (%d restarts in %.0f s): stopping", len(restarts), RESTART_WINDOW)
                    status = 1
                    stop.request()
                    break
                server.log.warning("worker %d (slot %d) died; starting a new one", pid, slot)
                pids[_start_worker(model, config, slot, counters, ready_write)] = slot
    finally:
        server.stop_processes(pids, stop.finish_by())
        os.close(ready_write)
        anchor.close()
        stop.close()
        if config.stats_file:
            server.write_stats_file(config.stats_file, stats, config.model)
    return status


def _hold_port(config: ServerConfig) -> socket.socket:
    anchor = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    anchor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    anchor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        anchor.bind((config.host, config.port))
    except OSError as exc:
        anchor.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    return anchor


def _start_worker(model, config: ServerConfig, slot: int, counters: SharedCounters, ready_write: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        status = _run_worker(model, config, slot, counters, ready_write)
    except BaseException:
        server.log.exception("worker %d failed", os.getpid())
    finally:
        os._exit(status)


def _run_worker(model, config: ServerConfig, slot: int, counters: SharedCounters, ready_write: int) -> int:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    stats = Stats()
    stop = server.Stop(config.drain_timeout)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stop.request())
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    listener = server.open_listener(config)
    stop.watch_listener(listener)
    finished = threading.Event()

    def publish():
        while not finished.wait(PUBLISH_INTERVAL):
            counters.store(stats, slot)

    server.start_thread(publish, name="publish-stats")
    os.write(ready_write, b"r")
    try:
        model.serve(listener, config, stats, stop)
    finally:
        finished.set()
        counters.store(stats, slot)
        listener.close()
    return 0


def _await_ready(ready_read: int, count: int, timeout: float = 15.0) -> bool:
    import select
    deadline = time.monotonic() + timeout
    received = 0
    while received < count and time.monotonic() < deadline:
        if select.select([ready_read], [], [], 0.1)[0]:
            received += len(os.read(ready_read, count - received))
    return received >= count


def _reap(pids: dict[int, int]):
    """Yield (pid, slot) of each worker that has exited, forgetting it."""
    for pid in list(pids):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        yield pid, pids.pop(pid)
