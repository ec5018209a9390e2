"""What the asyncio and uvloop models share: one `asyncio.Protocol`, run on either loop.

An event loop is a readiness multiplexer (epoll underneath) with the bookkeeping done for us: it
waits, reads when a socket is readable and hands the protocol what arrived (`data_received`),
buffers what `transport.write` could not send and sends it when the socket is writable again.
The protocol below only says what to do with the bytes (core.EchoSession) and when to stop
reading.

Protocols rather than streams: a callback per chunk costs one Python call, where streams add a
coroutine, a future and a reader buffer per read. A plain `Protocol` rather than a
`BufferedProtocol` that would read into one buffer of ours: the buffered kind costs one more
Python call per read (`get_buffer`) and a copy out of the shared buffer (BENCHMARKS.md measures
it: the `asyncio Buffered` and `uvloop Buffered` baselines), and it would buy only a bound on
each read. That bound is kept
where it is free: asyncio's transport reads `max_size` bytes per `recv` (256 KiB by default), set
here to `--recv-size`. uvloop reads into libuv's own 256 KiB buffer and hands us a bytes object of
what arrived, which nothing can bound: a peer about to be paused may bring in up to that much
more than `--high-water`, once.

Flow control is the transport's: `set_write_buffer_limits(high, low)` makes the loop call
`pause_writing` once its buffer for this peer passes `--high-water` and `resume_writing` once it
drains to `--low-water`; we answer with `pause_reading` / `resume_reading`, so a peer that does not
read cannot grow our memory.

We accept connections ourselves and hand each socket to the loop (`connect_accepted_socket`),
rather than `create_server`: out of descriptors, asyncio 3.11 retries the failing accept() up to
`backlog` times per wake-up (thousands of failed calls a second), and libuv silently accepts and
drops the waiting peers. Our accept goes through the same `Acceptor` and `admit` as every
other model. Stopping follows serving/toolkit.py: `stop.fileno()` is watched like any other descriptor;
when it fires we stop watching the listener, open connections may finish until `stop.deadline`,
and whatever is left is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from iomodels.serving import toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.core import EchoSession
from iomodels.serving.models._sweep import Sweep, kernel_unsent
from iomodels.serving.stats import Stats

# Accepts per wake-up of the listener: a burst of connections cannot starve open ones.
ACCEPT_BURST = 64


class EchoProtocol(asyncio.Protocol):
    """One connection. Every callback is an event the loop dispatched (counted in `events`)."""

    __slots__ = ("hub", "stats", "transport", "session", "quiet_ticks", "started", "unsent_mark")

    def __init__(self, hub: _Hub):
        self.hub = hub
        self.stats = hub.stats
        self.transport: asyncio.Transport | None = None
        self.session = hub.new_session()
        self.quiet_ticks = 0
        self.started = time.monotonic()
        self.unsent_mark = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.stats.events += 1
        self.transport = transport
        transport.set_write_buffer_limits(high=self.hub.config.high_water, low=self.hub.config.low_water)
        if hasattr(transport, "max_size"):  # asyncio's selector transport (see the module docstring)
            transport.max_size = self.hub.config.recv_size
        self.hub.connections.add(self)
        if self.hub.closing:  # adopted after the drain deadline
            transport.abort()

    def data_received(self, data: bytes) -> None:
        # An exception here is a bug: the loop reports it (`on_loop_error`) and aborts this
        # connection only, so there is no try/except on the path every request takes.
        stats = self.stats
        stats.events += 1
        stats.recv_calls += 1
        nbytes = len(data)
        stats.bytes_in += nbytes
        self.quiet_ticks = 0
        # The transport tries send() at once and keeps only what the kernel did not take.
        self.transport.write(self.session.reply_to(data))
        stats.send_calls += 1
        stats.bytes_out += nbytes
        hub = self.hub
        if not hub.turn_noted:  # once per turn at most (and never where the loop counts its turns)
            hub.note_turn()

    def eof_received(self) -> bool:
        self.stats.events += 1
        self.stats.recv_calls += 1
        self.session.receive_eof()
        return False  # the transport closes itself once its buffer has gone out

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.release(self)
        # Any other exception is a bug the loop has already reported (`on_loop_error`).
        if isinstance(exc, OSError):
            toolkit.connection_failed(exc, self.stats)


def _unsent(protocol: EchoProtocol) -> int:
    """Output on its way to the peer: the transport's buffer and the kernel's send queue."""
    transport = protocol.transport
    return kernel_unsent(transport.get_extra_info("socket").fileno()) + transport.get_write_buffer_size()


class _Hub:
    """One serve() call: accepting, the open connections, idle sweeps, the drain."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: socket.socket, config: ServerConfig,
                 stats: Stats, stop: toolkit.Stop, new_session: Callable[[], EchoSession], count_turns: bool):
        self.loop = loop
        self.listener = listener
        self.new_session = new_session
        self.config = config
        self.stats = stats
        self.stop = stop
        # Loops without a counting selector (uvloop) count turns that ran our callbacks instead:
        # the first callback of a turn notes it. A loop that counts its own turns starts (and
        # stays) noted, so its callbacks pay one attribute test and no call.
        self.turn_noted = not count_turns
        # Live protocols. stats.connections_open also counts sockets still being adopted.
        self.connections: set[EchoProtocol] = set()
        self._adopting: set[asyncio.Task] = set()
        self._all_closed: asyncio.Future = loop.create_future()
        self.closing = False
        self.acceptor = toolkit.Acceptor(listener, stats, stop)
        self._resume_accepting: asyncio.TimerHandle | None = None
        self.sweep = Sweep(config, stats, _unsent)

    def start_accepting(self) -> None:
        self._resume_accepting = None
        self.loop.add_reader(self.listener.fileno(), self._accept)

    def stop_accepting(self) -> None:
        self.loop.remove_reader(self.listener.fileno())
        if self._resume_accepting is not None:
            self._resume_accepting.cancel()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn = self.acceptor.accept()
            except OSError:  # our listener is broken (EBADF...): a bug, reported by the loop
                self.stop_accepting()
                raise
            if conn is None:
                if self.stop.requested:  # the drain begins
                    self.stop_accepting()
                return
            if isinstance(conn, float):  # out of descriptors: pause accepting
                self.stop_accepting()
                self._resume_accepting = self.loop.call_later(conn, self.start_accepting)
                return
            if toolkit.admit(conn, self.config, self.stats):
                conn.setblocking(False)
                # The loop keeps only a weak reference to a task: we hold it until it is done.
                task = self.loop.create_task(self._adopt(conn))
                self._adopting.add(task)
                task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        protocol = EchoProtocol(self)
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except Exception as exc:
            toolkit.connection_failed(exc, self.stats)
            if protocol.transport is None:  # no transport, so no connection_lost will count it
                toolkit.release(conn, self.stats)
                self._check_all_closed()

    def release(self, protocol: EchoProtocol) -> None:
        self.connections.discard(protocol)
        self.stats.connections_open -= 1
        self.stats.connections_closed += 1
        self._check_all_closed()

    def _check_all_closed(self) -> None:
        if not self.stats.connections_open and self.stop.requested and not self._all_closed.done():
            self._all_closed.set_result(None)

    def note_turn(self) -> None:
        # call_soon runs after this turn's I/O callbacks: one count per loop turn that had work.
        self.turn_noted = True
        self.loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self.turn_noted = False
        self.stats.loop_iterations += 1

    def _sweep(self) -> None:
        self._sweep_timer = self.loop.call_later(self.sweep.interval, self._sweep)
        for protocol in self.sweep.expired(self.connections):
            # A peer that reads nothing has output stuck in the buffer: close() would wait for it.
            if protocol.transport.get_write_buffer_size():
                protocol.transport.abort()
            else:
                protocol.transport.close()

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """An exception the loop caught, in one of our callbacks or its own: a bug, so one line with
        its traceback (the loop has already aborted the connection it came from, if any)."""
        self.stats.internal_errors += 1
        toolkit.log.error("internal error in the event loop: %s", context.get("message"),
                         exc_info=context.get("exception"))

    async def run(self) -> None:
        loop, stop = self.loop, self.stop
        stopping = loop.create_future()
        loop.add_reader(stop.fileno(), lambda: stopping.done() or stopping.set_result(None))
        self.start_accepting()
        self._sweep_timer = self.sweep.interval and loop.call_later(self.sweep.interval, self._sweep)
        try:
            await stopping
        finally:
            loop.remove_reader(stop.fileno())
            self.stop_accepting()
        await self._until_closed(toolkit.seconds_until(stop.deadline))
        self.closing = True
        for protocol in list(self.connections):
            # abort() drops the transport's buffer but closes with a FIN: the peer would take
            # its cut reply for a whole one (toolkit: what is left at the deadline is reset).
            with contextlib.suppress(AttributeError):
                toolkit.reset_on_close(protocol.transport.get_extra_info("socket"))
            protocol.transport.abort()
        # abort() reports connection_lost on a later loop turn: let that turn happen.
        await self._until_closed(1.0)
        if self._sweep_timer:
            self._sweep_timer.cancel()

    async def _until_closed(self, timeout: float | None) -> None:
        """Wait until every connection closed, or `timeout` seconds (None: no limit)."""
        self._check_all_closed()
        if not self._all_closed.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._all_closed), timeout)


def serve_on(new_loop: Callable[[], asyncio.AbstractEventLoop], listener: socket.socket,
             config: ServerConfig, stats: Stats, stop: toolkit.Stop, new_session: Callable[[], EchoSession],
             count_turns: bool = False) -> None:
    """Serve on a fresh loop from `new_loop` until stopped and drained; close the loop."""
    listener.setblocking(False)
    loop = new_loop()
    hub = _Hub(loop, listener, config, stats, stop, new_session, count_turns)
    loop.set_exception_handler(hub.on_loop_error)
    try:
        loop.run_until_complete(hub.run())
    finally:
        loop.close()
