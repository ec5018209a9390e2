"""One bench worker process: its share of the connections, on its own uvloop event loop.

Talks to the parent over a pipe, in this order:
    worker -> ("ready", {...})        idle and active connections are open
    parent -> ("start", t0_ns)        everyone starts at the same CLOCK_MONOTONIC instant
    worker -> ("progress", completed) a few times a second, for the live line
    worker -> ("done", {...})         counts, encoded histogram, CPU used in the measured window
or worker -> ("error", message) if it cannot run at all. The run ends by itself at t0 + warmup +
duration even if the parent is gone; SIGINT is the parent's business (it terminates workers).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from dataclasses import dataclass
from time import perf_counter_ns

import uvloop

from iomodels.bench.connection import Connection, CountingConnection, Schedule, Tally, round_robin
from iomodels.bench.idle import IdleConnection, LimitError, SourcePlan, open_many, raise_nofile
from iomodels.bench.oneshot import OneShotRequests
from iomodels.bench.payload import Messages, Size

TICK = 0.25  # seconds between latency flushes and progress messages


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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    idle = await open_many(loop, address, plan, range(spec.first_idle, spec.first_idle + spec.idle),
                           lambda: IdleConnection(tally), tally.connect)
    active, oneshot = [], None
    if spec.connect_per_request:
        oneshot = OneShotRequests(loop, address, plan.family, tally, messages.script(spec.index))
        # One probe connection, so that a server that is not there fails the run up front.
        probes = await open_many(loop, address, plan, [0], lambda: IdleConnection(tally), tally.connect)
        for probe in probes:
            probe.closing = True
            probe.transport.close()
        connected = len(probes)
    else:
        first = spec.first_connection
        starts = iter(range(first * 7, (first + spec.connections) * 7, 7))
        kind = Connection if spec.size.fixed else CountingConnection
        active = await open_many(
            loop, address, plan, range(first, first + spec.connections),
            lambda: kind(tally, messages.script(next(starts)), refill=spec.rate is None), tally.connect)
        connected = len(active)
    ready = {"connected": connected, "idle": len(idle), "connect_errors": tally.connect.count,
             "connect_reasons": tally.connect.by_reason}
    command = await _receive(loop, pipe) if _send(pipe, ("ready", ready)) else ("stop",)
    if command[0] != "start":
        return await _close(tally, [], idle, oneshot)
    t0 = command[1]
    warm_end = t0 + int(spec.warmup * 1e9)
    end = warm_end + int(spec.duration * 1e9)
    await asyncio.sleep(max(0.0, (t0 - perf_counter_ns()) / 1e9))
    schedule = _start(loop, spec, active, oneshot, t0, end)

    window = {}

    def edge(name: str) -> None:
        tally.flush(measuring=name == "end")
        window[name] = (perf_counter_ns(), cpu_seconds(), _bytes(spec, tally, active, oneshot))

    start_edge = loop.call_later((warm_end - perf_counter_ns()) / 1e9, edge, "start")
    while perf_counter_ns() < end:
        await asyncio.sleep(max(0.0, min(TICK, (end - perf_counter_ns()) / 1e9)))
        if perf_counter_ns() < end:  # the end edge flushes the last batch itself
            tally.flush(measuring="start" in window)
        if not _send(pipe, ("progress", tally.completed)):
            return await _close(tally, active, idle, oneshot)  # the parent is gone: stop early
    if "start" not in window:  # a loop so late that the end came first: the window is empty
        start_edge.cancel()
        edge("start")
    edge("end")
    await _close(tally, active, idle, oneshot)
    (t_start, cpu_start, bytes_start), (t_end, cpu_end, bytes_end) = window["start"], window["end"]
    seconds = (t_end - t_start) / 1e9
    _send(pipe, ("done", {
        "index": spec.index, "pid": os.getpid(), "window_s": seconds,
        "requests": tally.histogram.count, "bytes": bytes_end - bytes_start,
        "histogram": tally.histogram.encode(), "warmup_requests": tally.warmup_requests,
        "mismatches": tally.mismatches, "protocol_errors": tally.protocol_errors,
        "lost": tally.lost, "idle_lost": tally.idle_lost, "lost_reasons": tally.lost_reasons,
        "connect_errors": tally.connect.count, "connect_reasons": tally.connect.by_reason,
        "cpu": (cpu_end - cpu_start) / seconds if seconds > 0 else 0.0,
        "lag_ns": list(schedule.lag) if schedule else [],
        "ports_exhausted": oneshot.exhausted if oneshot else 0,
        "source_addresses": oneshot.source if oneshot else plan.addresses,
    }))


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
        return (tally.warmup_requests + tally.histogram.count) * spec.size.low
    return sum(connection.nbytes for connection in active)


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


async def _close(tally: Tally, active, idle, oneshot) -> None:
    tally.finishing = True
    if oneshot is not None:
        await oneshot.stop()
    for protocol in active:
        if protocol.transport is not None:
            protocol.transport.close()
    for protocol in idle:
        protocol.reset()
    await asyncio.sleep(0)  # let the transports run their close callbacks
