"""One bench worker process: its share of the connections, on its own uvloop event loop (the loaded
connections are read through one `Poller`, see poller.py).

Talks to the parent over a pipe, in this order:
    worker -> ("ready", {...})        idle and active connections are open
    parent -> ("start", t0_ns)        everyone starts at the same CLOCK_MONOTONIC instant
    worker -> ("progress", completed) a few times a second, for the live line
    parent -> ("stop",)               optional: Ctrl-C, end now and report what was measured
    worker -> ("done", {...})         counts, encoded histograms (whole window and per interval),
                                      CPU used in the measured window
or worker -> ("error", message) if it cannot run at all. The run ends by itself at t0 + warmup +
duration even if the parent is gone; SIGINT is the parent's business (it sends "stop").

Latencies are flushed into histograms on a grid of TICK seconds aligned on the end of the warm-up,
so that the window's edges and the INTERVAL-second time series fall on flushes.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from dataclasses import dataclass
from time import perf_counter_ns

import uvloop

from iomodels.bench.connection import Connection, Tally
from iomodels.bench.histogram import LatencyHistogram
from iomodels.bench.idle import IdleConnection, LimitError, SourcePlan, on_transports, open_many, raise_nofile
from iomodels.bench.oneshot import OneShotRequests
from iomodels.bench.payload import Messages, Size, Stream
from iomodels.bench.poller import Poller
from iomodels.bench.schedule import Schedule, round_robin

TICK = 0.25  # seconds between latency flushes and progress messages
INTERVAL = 1.0  # seconds per point of the time series (--csv, --hdr-log, the JSON's "intervals")
TICK_NS, INTERVAL_NS = int(TICK * 1e9), int(INTERVAL * 1e9)
MAX_REACH = 4 << 20  # bytes: batches longer than this are joined from pieces (see Stream)


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    host: str
    port: int
    connections: int
    first_connection: int  # global number of the first active connection (source address plan)
    idle: int
    first_idle: int
    size: Size
    pipeline: int
    rate: float | None  # this worker's share of the requests per second
    connect_per_request: bool
    warmup: float
    duration: float
    total_connections: int  # over all workers, idle included: decides source-address spreading


def cpu_times() -> tuple[float, float]:
    """CPU seconds so far: (user + system, system). The kernel's part is told apart because at
    loopback most of a request's cost is the kernel's TCP."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def cpu_seconds() -> float:
    return cpu_times()[0]


def main(spec: WorkerSpec, pipe) -> None:
    """Process entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        raise_nofile(spec.idle + (0 if spec.connect_per_request else spec.connections))
    except LimitError as exc:
        pipe.send(("error", str(exc)))
        return
    uvloop.run(_run(spec, pipe))


async def _run(spec: WorkerSpec, pipe) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    plan = SourcePlan(spec.host, spec.total_connections)
    address = (spec.host, spec.port)
    messages = Messages(spec.size, seed=spec.index)
    silent = on_transports(loop, lambda: IdleConnection(tally))
    idle = await open_many(loop, address, plan, range(spec.first_idle, spec.first_idle + spec.idle), silent,
                           tally.connect)
    active, oneshot, poller = [], None, None
    if spec.connect_per_request:
        oneshot = OneShotRequests(loop, address, plan.family, tally, messages.script(spec.index))
        # One probe connection, so that a server that is not there fails the run up front.
        probes = await open_many(loop, address, plan, [0], silent, tally.connect)
        for probe in probes:
            probe.closing = True
            probe.transport.close()
        connected = len(probes)
    else:
        first = spec.first_connection
        stream = Stream(messages, min(MAX_REACH, spec.pipeline * spec.size.high))
        poller = Poller(loop)
        starts = iter(range(first, first + spec.connections))

        async def loaded(sock):
            connection = _connection(tally, stream, next(starts), spec.rate is None)
            poller.attach(sock, connection)
            return connection

        active = await open_many(loop, address, plan, range(first, first + spec.connections), loaded,
                                 tally.connect)
        connected = len(active)
    ready = {"connected": connected, "idle": len(idle), "connect_errors": tally.connect.count,
             "connect_reasons": tally.connect.by_reason}
    command = await _receive(loop, pipe) if _send(pipe, ("ready", ready)) else ("stop",)
    if command[0] != "start":
        return await _close(tally, active, idle, oneshot, poller)
    t0 = command[1]
    warm_end = t0 + int(spec.warmup * 1e9)
    end = warm_end + int(spec.duration * 1e9)
    await asyncio.sleep(max(0.0, (t0 - perf_counter_ns()) / 1e9))
    schedule = _start(loop, spec, active, oneshot, t0, end)
    window, intervals, cut = await _measure(spec, tally, pipe, active, oneshot, t0, warm_end, end)
    await _close(tally, active, idle, oneshot, poller)
    (t_start, cpu_start, system_start, bytes_start), (t_end, cpu_end, system_end, bytes_end) = (window["start"],
                                                                                                window["end"])
    seconds = (t_end - t_start) / 1e9
    _send(pipe, ("done", {
        "index": spec.index, "pid": os.getpid(), "window_s": seconds, "partial": cut is not None,
        "cut_in_warmup": cut == "warm-up",
        "requests": tally.histogram.count, "bytes": bytes_end - bytes_start,
        "histogram": tally.histogram.encode(), "intervals": intervals, "warmup_requests": tally.warmup_requests,
        "mismatches": tally.mismatches, "warmup_mismatches": tally.warmup_mismatches,
        "first_mismatch": tally.first_mismatch,
        "protocol_errors": tally.protocol_errors, "protocol_reasons": tally.protocol_reasons,
        "lost": tally.lost, "idle_lost": tally.idle_lost, "lost_reasons": tally.lost_reasons,
        "connect_errors": tally.connect.count, "connect_reasons": tally.connect.by_reason,
        "cpu": (cpu_end - cpu_start) / seconds if seconds > 0 else 0.0,
        "system_cpu": (system_end - system_start) / seconds if seconds > 0 else 0.0,
        "lag_ns": list(schedule.lag) if schedule else [],
        "ports_exhausted": oneshot.exhausted if oneshot else 0,
        "source_addresses": oneshot.source if oneshot else plan.addresses,
    }))


def _connection(tally: Tally, stream: Stream, number: int, refill: bool) -> Connection:
    # Connections start 7 messages apart in the table, so they do not all send the same bytes.
    return Connection(tally, stream, first=number * 7 % stream.count, refill=refill, number=number)


def _ticks(t0: int, warm_end: int, end: int) -> list[int]:
    """The flush instants: every TICK, on a grid through warm_end, and the end itself."""
    before = [warm_end - n * TICK_NS for n in range((warm_end - t0) // TICK_NS, 0, -1)]
    return before + list(range(warm_end, end, TICK_NS)) + [end]


async def _measure(spec: WorkerSpec, tally: Tally, pipe, active, oneshot, t0: int, warm_end: int, end: int):
    """Flush on the grid until the end (or the parent's "stop"): returns the window's edges as
    {"start"|"end": (ns, cpu seconds, system cpu seconds, bytes)}, the intervals, and where it was cut short: None
    (it was not), "warm-up" or "measuring"."""
    window, intervals, cut = {}, [], None
    interval, errors_before, mismatches_before, interval_start = LatencyHistogram(), 0, 0, warm_end

    def edge(name: str) -> None:
        window[name] = (perf_counter_ns(), *cpu_times(), _bytes(spec, tally, active, oneshot))

    for tick in _ticks(t0, warm_end, end):
        await asyncio.sleep(max(0.0, (tick - perf_counter_ns()) / 1e9))
        if _stop_asked(pipe):
            now = perf_counter_ns()
            cut, tick = "warm-up" if now < warm_end else "measuring", max(now, warm_end)
        measuring = tick > warm_end
        fresh = tally.flush(measuring)
        if tick == warm_end or (cut and "start" not in window):
            edge("start")
        if measuring:
            interval.add(fresh)
            if (tick - warm_end) % INTERVAL_NS == 0 or tick == end or cut:
                intervals.append({"start_s": (interval_start - warm_end) / 1e9, "end_s": (tick - warm_end) / 1e9,
                                  "histogram": interval.encode(), "errors": tally.errors - errors_before,
                                  "mismatches": tally.mismatches - mismatches_before})
                interval, interval_start = LatencyHistogram(), tick
                errors_before, mismatches_before = tally.errors, tally.mismatches
        if cut or tick == end:
            break
        if not _send(pipe, ("progress", tally.completed)):
            cut = "warm-up" if tick < warm_end else "measuring"  # the parent is gone: stop early
            break
    if "start" not in window:
        edge("start")
    edge("end")
    return window, intervals, cut


def _stop_asked(pipe) -> bool:
    try:
        return pipe.poll(0) and pipe.recv()[0] == "stop"
    except (EOFError, OSError):
        return True


def _start(loop, spec: WorkerSpec, active, oneshot, t0: int, end: int) -> Schedule | None:
    if oneshot is not None:
        return oneshot.start(spec.connections, t0, end, spec.rate)
    if spec.rate is None:
        for connection in active:
            connection.start(spec.pipeline)
        return None
    schedule = Schedule(loop, spec.rate, t0, end, round_robin(active))
    schedule.tick()
    return schedule


def _bytes(spec: WorkerSpec, tally: Tally, active, oneshot) -> int:
    """Reply bytes so far: counted where sizes vary, else requests x size (the hot path counts nothing)."""
    if oneshot is not None:
        return oneshot.nbytes
    if spec.size.fixed:
        return (tally.warmup_requests + tally.histogram.count) * spec.size.low  # after a flush
    return sum(connection.nbytes for connection in active)  # replies cut anywhere: bytes, not messages


def _send(pipe, message) -> bool:
    try:
        pipe.send(message)
        return True
    except (BrokenPipeError, ConnectionResetError):  # the parent was interrupted and closed its end
        return False


async def _receive(loop, pipe):
    """The parent's next command, without blocking the loop; ("stop",) if the parent is gone."""
    ready = loop.create_future()
    loop.add_reader(pipe.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(pipe.fileno())
        # libuv left the descriptor non-blocking; multiprocessing's Connection expects it blocking,
        # or a message that arrives in two pieces, or a send to a slow reader, fails with EAGAIN.
        os.set_blocking(pipe.fileno(), True)
    try:
        return pipe.recv()
    except (EOFError, ConnectionResetError):
        return ("stop",)


async def _close(tally: Tally, active, idle, oneshot, poller) -> None:
    tally.finishing = True
    if oneshot is not None:
        await oneshot.stop()
    for connection in active:
        connection.close()
    if poller is not None:
        poller.close()
    for protocol in idle:
        protocol.reset()
    await asyncio.sleep(0)  # let the transports run their close callbacks
