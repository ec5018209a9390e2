"""Asynchronous I/O with io_uring: the kernel does the copy, then tells us (tutorial section 1.4).

This is the model of section 1.4, "the kernel copies the data into the user's memory, then tells
the user it is done": the completion model, a "proactor". We do not ask whether a socket is ready
and then read it ourselves, as every readiness model does (select, poll, epoll, and the asyncio
and uvloop loops, where the copy happens in our thread after the wake-up). We hand the kernel
whole operations: "accept on this listener", "receive into this buffer", "send these bytes". The
kernel waits for the data *and* copies it into our buffer, and then posts a completion with the
result: a new fd, a byte count, or a negative errno.

Who waits where: one thread, in `io_uring_enter()`, for all connections, and neither phase of
input blocks it: when a completion arrives, the bytes are already in our memory. Operations are
written into a submission queue shared with the kernel and published in a batch: one
`io_uring_enter` per turn of the loop, however many operations it carries. Completions are read
from a shared completion queue; the wait takes a second `io_uring_enter` only when none is ready
yet. Where epoll needs an `epoll_wait` plus a `recv` and a `send` per request, each a system call,
here the system calls per request fall as load rises (at 100 busy connections, about ten
requests per `io_uring_enter`): the `submits`, `wait_calls` and `completions` counters show it.

What it costs: a buffer must be committed to every pending receive, before any data exists.
`--uring-mode oneshot` gives each connection its own `--recv-size` buffer (an anonymous mapping, so
the pages become resident only once the kernel writes into them) and submits a new receive after
each completion. `--uring-mode multishot` (the default) submits one receive per connection that
stays armed, and the kernel takes a buffer from a shared ring of provided buffers only when data
arrives: memory no longer grows with idle connections, but when the ring runs dry a receive ends
with ENOBUFS and must be armed again; we copy the bytes out of the buffer, which hands it back.
These buffers are small (`--recv-size`/32: see back-pressure below), so a big message comes in many
completions; their replies still leave in one send, as a completion flagged SOCK_NONEMPTY (the
socket holds more) leaves its reply for the next one to send. Each buffer stays referenced until
its completion arrives: freeing it earlier would let the kernel write into memory we reused.
Measured on a 2-core machine (100 connections x 64 bytes), io_uring costs about what the `epoll`
model costs per request: most of that is the kernel's TCP work, which io_uring does not remove (it
saves system-call crossings, about two per request, not the work), and on Python 3.11 the binding's
own locks give back in user space what the saved crossings were worth. Multishot costs about 8 %
less than oneshot there, having no receive to submit per request; with bigger messages oneshot
costs less (10 % at 4 KiB, less than half at 64 KiB), and 16 KiB buffers (`--recv-size 512K`) would
save multishot about 10 % there.

How it fails, and what we do: a negative result is an error on that one connection (a reset or a
broken pipe closes it quietly, anything else is logged). A send may take only part of the bytes: we
submit the rest. Back-pressure: while a peer's unsent output is above `--high-water`, its receive
is not re-armed (multishot: it is cancelled), so a client that never reads cannot grow our memory.
A cancel does not stop a pass already under way: while the socket has data, the kernel fills up to
32 buffers in one go (MULTISHOT_MAX_RETRY in Linux's io_uring/net.c), and those bytes are ours to
take; buffers of `--recv-size`/32 bound that by about one `--recv-size` per paused peer, as
oneshot's receive in flight (a late completion cancels again: a cancel may race the next pass).
(Leaving those bytes in their buffers until the peer reads would let a handful of peers that never
read empty the ring for everyone.) Twenty peers that never read grew the server by 18 MiB with 16
KiB buffers, by 3 MiB with these. One send at most is in flight per connection, so bytes never
overtake each other. io_uring may be forbidden (a seccomp profile, `kernel.io_uring_disabled`):
then `iomodels serve` says so in one line and exits with status 2. SIGTERM wakes the wait through a
poll operation on the stop pipe, and on a pipe Python's C signal handler writes to.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import mmap
import os
import signal
import socket
import threading
import time

from iomodels.serving import toolkit, uring
from iomodels.serving.core import EchoSession
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._sweep import Sweep, unsent_on_fd

MODEL = ModelInfo(
    kind="completion",
    name="io_uring", family="asynchronous I/O, completion-based (proactor)", section="1.4",
    variants=(("--uring-mode", "oneshot"), ("--uring-mode", "multishot")),
    waits_in="io_uring_enter(): submits a batch, waits for completions",
    cost="a buffer committed per pending receive; one system call per batch of operations",
    multi_worker=True, reads=("recv_size", "uring_mode"))

unavailable_reason = uring.unavailable_reason

RING_ENTRIES = 4096
# Provided buffers (multishot): recv_size / PASS_BUFFERS bytes each, so that the pass that may
# complete after a cancel brings in one recv_size at most (see back-pressure above), and enough of
# them that many connections can have data at once.
BUFFER_COUNT = 256
PASS_BUFFERS = 32
MAX_PROVIDED_BUFFER = 16 * 1024
# A receive that ended with these is no error: we cancelled it (back-pressure), or the provided
# buffers ran out for a moment. It is armed again as soon as reading may go on.
_REARM = frozenset({errno.ECANCELED, errno.ENOBUFS})
_MORE = uring.MORE
_NONEMPTY = uring.SOCK_NONEMPTY


def provided_buffer_size(recv_size: int) -> int:
    return max(1, min(recv_size // PASS_BUFFERS, MAX_PROVIDED_BUFFER))


class _Conn:
    """One connection: its socket, protocol state, and at most one receive and one send in flight.

    The handlers run once per completion, so they are written flat: few calls, locals for what
    is used twice.
    """

    __slots__ = ("p", "ring", "stats", "sock", "fd", "session", "buf", "recv_op", "send_size",
                 "quiet_ticks", "started", "unsent_mark", "closed", "on_recv", "on_send")

    def __init__(self, proactor: _Proactor, sock: socket.socket):
        self.p = proactor
        self.ring = proactor.ring
        self.stats = proactor.stats
        self.sock = sock
        self.fd = sock.fileno()
        self.session = proactor.new_session()
        self.buf = proactor.new_buffer()
        self.recv_op: uring.Completion | None = None
        self.send_size = 0  # bytes of the send in flight (0: none)
        self.quiet_ticks = 0
        self.started = time.monotonic()
        self.unsent_mark = 0
        self.closed = False
        # Bound once: every operation carries one of these as its user_data (close() drops them).
        self.on_recv = self._recv_done_multishot if proactor.multishot else self._recv_done
        self.on_send = self._send_done

    def arm_recv(self) -> None:
        if self.p.multishot:
            self.recv_op = self.ring.recv_multishot(self.fd, self.p.buffers, self.on_recv)
        else:
            self.recv_op = self.ring.recv(self.fd, self.buf, 0, self.on_recv)

    def _recv_done(self, c: uring.Completion) -> None:
        self.recv_op = None
        res = c.res
        if self.closed:
            return  # only now may the buffer go: the kernel is done with it
        if res <= 0:
            self._recv_ended(res)
        elif not self._received(self.buf[:res]):
            self.recv_op = self.ring.recv(self.fd, self.buf, 0, self.on_recv)

    def _recv_done_multishot(self, c: uring.Completion) -> None:
        res = c.res
        flags = c.flags
        if res > 0 and not self.closed:
            # SOCK_NONEMPTY: the socket holds more, whose completion follows at once, so one send
            # can carry both replies (a 64 KiB message fills 32 buffers, and needs one send).
            paused = self._received(bytes(c.result), flags & _NONEMPTY)  # the copy frees the buffer
            if paused and self.recv_op is not None:
                self.ring.cancel(self.recv_op)  # back-pressure: the kernel must stop filling buffers
        # Only the final completion of an operation is the handle that prepare returned.
        if c is not self.recv_op or flags & _MORE:
            return
        self.recv_op = None
        if self.closed:
            return
        if not self.send_size and self.session.pending():
            self._send(self.session.pending())  # held back for a completion that will not come now
        if res <= 0:
            self._recv_ended(res)
        elif self.session.wants_read:
            self.arm_recv()

    def _received(self, data: bytes, more_coming: int = 0) -> bool:
        """Take data, send the reply unless more is coming; return whether reading must pause."""
        stats = self.stats
        stats.recv_calls += 1
        stats.bytes_in += len(data)
        self.quiet_ticks = 0
        session = self.session
        pending = session.receive_data(data)
        paused = session.reading_paused
        if not self.send_size and (paused or not more_coming):
            self._send(pending)
        return paused

    def _recv_ended(self, res: int) -> None:
        """A receive completed without data: end of input, or an error (ours or the peer's)."""
        session = self.session
        if res == 0:
            self.stats.recv_calls += 1
            session.receive_eof()
            if session.finished:
                self.p.close(self)
        elif -res not in _REARM:
            self.p.fail(self, OSError(-res, os.strerror(-res)))
        elif session.wants_read:
            self.arm_recv()  # ENOBUFS: the buffers in use are back by the time this is submitted

    def _send(self, pending: bytes | bytearray) -> None:
        # A bytearray grows while its send is in flight: the kernel gets an immutable copy.
        data = pending if type(pending) is bytes else bytes(pending)
        self.send_size = len(data)
        self.stats.send_calls += 1
        self.ring.send(self.fd, data, uring.SEND_FLAGS, self.on_send)

    def _send_done(self, c: uring.Completion) -> None:
        size = self.send_size
        self.send_size = 0
        res = c.res
        if self.closed:
            return
        if res < 0:
            self.p.fail(self, OSError(-res, os.strerror(-res)))
            return
        stats = self.stats
        stats.bytes_out += res
        if res < size:
            stats.send_partial += 1
        session = self.session
        was_paused = session.reading_paused
        session.sent(res)
        pending = session.pending()
        if pending:
            self._send(pending)  # the rest of a partial send, and what arrived meanwhile
        elif session.eof_received:
            self.p.close(self)
            return
        if was_paused and session.wants_read and self.recv_op is None:
            self.arm_recv()


class _Proactor:
    """The loop: submit, wait for completions, call each one's handler, run timers."""

    def __init__(self, ring: uring.Ring, listener: socket.socket, config, stats, stop: toolkit.Stop, new_session):
        self.new_session = new_session
        self.ring, self.listener, self.config, self.stats, self.stop = ring, listener, config, stats, stop
        self.multishot = config.uring_mode == "multishot"
        self.buffers = ring.buffer_group(provided_buffer_size(config.recv_size), BUFFER_COUNT) \
            if self.multishot else None
        self.connections: set[_Conn] = set()
        self.accept_op: uring.Completion | None = None
        self.backoff = toolkit.AcceptBackoff(stats)
        self.sweep = Sweep(config, stats, unsent_on_fd)
        self.timers: list[tuple[float, int, object]] = []  # a heap of (monotonic time, seq, callable)
        self._timer_seq = itertools.count()
        self.draining = False

    def new_buffer(self):
        # Anonymous memory: a receive buffer costs resident pages only once data lands in it.
        return None if self.multishot else mmap.mmap(-1, self.config.recv_size)

    # -- accepting -------------------------------------------------------------------------

    def arm_accept(self) -> None:
        if not self.stop.requested:
            self.accept_op = self.ring.accept(self.listener.fileno(), self.multishot, self.accepted)

    def accepted(self, c: uring.Completion) -> None:
        res = c.res
        final = c is self.accept_op and not c.flags & _MORE
        if final:
            self.accept_op = None
        if res >= 0:
            self.backoff.succeeded()
            self.admit(socket.socket(self.listener.family, socket.SOCK_STREAM, 0, fileno=res))
            delay = 0.0
        elif self.stop.requested:
            return  # Stop.request() shut the listener down: pending accepts fail (EINVAL)
        else:
            delay = self.backoff.failed(OSError(-res, os.strerror(-res)))
        if final:
            if delay:
                self.call_at(time.monotonic() + delay, self.arm_accept)
            else:
                self.arm_accept()

    def admit(self, sock: socket.socket) -> None:
        if self.draining:
            toolkit.abort(sock)
            return
        if not toolkit.admit(sock, self.config, self.stats):
            return
        conn = _Conn(self, sock)
        self.connections.add(conn)
        conn.arm_recv()

    # -- closing ---------------------------------------------------------------------------

    def close(self, conn: _Conn, abortive: bool = False) -> None:
        """Release `conn`. Abortive: operations may be in flight, and are made to finish first."""
        if conn.closed:
            return
        conn.closed = True
        self.connections.discard(conn)
        if abortive:
            # An SQE still queued for this fd would run on whatever socket reuses the number.
            self.ring.submit()
            # shutdown() completes a pending receive (EOF) or send (EPIPE) at once; close() alone
            # would not, the ring holding its own reference to the socket. SHUT_WR (a FIN) only
            # for a send in flight: its FIN queues behind the output the peer is not taking.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR if conn.send_size else socket.SHUT_RD)
        toolkit.release(conn.sock, self.stats)
        # The handlers bound in __init__ make each connection a reference cycle: without this its
        # pending output and buffer would wait for a full garbage collection (hundreds of MiB
        # under churn). An operation still in flight keeps what it uses alive by itself.
        conn.on_recv = conn.on_send = conn.session = conn.buf = None

    def fail(self, conn: _Conn, exc: Exception) -> None:
        toolkit.connection_failed(exc, self.stats)
        self.close(conn, abortive=True)

    # -- timers and the loop ---------------------------------------------------------------

    def call_at(self, when: float, callback) -> None:
        heapq.heappush(self.timers, (when, next(self._timer_seq), callback))

    def _sweep(self) -> None:
        self.call_at(time.monotonic() + self.sweep.interval, self._sweep)
        for conn in self.sweep.expired(self.connections):
            self.close(conn, abortive=True)

    def _run_timers(self) -> float | None:
        """Run the timers that are due; return the seconds until the next one (None: no timer)."""
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            heapq.heappop(self.timers)[2]()
        deadline = self.stop.deadline if self.draining else float("inf")
        if self.timers:
            deadline = min(deadline, self.timers[0][0])
        return None if deadline == float("inf") else max(0.0, deadline - now)

    def stop_requested(self, c: uring.Completion) -> None:
        self.draining = True
        if self.accept_op is not None:
            self.ring.cancel(self.accept_op)

    def run(self) -> None:
        ring, stats = self.ring, self.stats
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # The C-level signal handler writes to this pipe, so a signal arriving just before we
        # enter the kernel still wakes the wait (Python's handler would only run after it).
        # Only the main thread takes signals (and may set the pipe): elsewhere, the stop pipe.
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        polls = {}

        def woken(c):
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            polls["signal"] = ring.poll_in(wake_read, woken)

        try:
            polls["stop"] = ring.poll_in(self.stop.fileno(), self.stop_requested)
            woken(None)
            self.arm_accept()
            if self.sweep.interval:
                self.call_at(time.monotonic() + self.sweep.interval, self._sweep)
            timeout = self._run_timers()
            while not self.draining or (self.connections and time.monotonic() < self.stop.deadline):
                batch = ring.submit_and_wait(timeout)
                stats.wait_calls += 1
                stats.loop_iterations += 1
                stats.completions += len(batch)
                stats.events += len(batch)
                if not batch:
                    stats.empty_wakeups += 1
                elif not stats.loop_iterations % 64:  # the ring counts its own enters
                    stats.submits = ring.submit_calls()
                for c in batch:
                    handler = c.user_data
                    try:
                        handler(c)
                    except Exception as exc:
                        owner = getattr(handler, "__self__", None)
                        if not isinstance(owner, _Conn):
                            raise
                        self.fail(owner, exc)
                timeout = self._run_timers() if self.timers or self.draining else None
            self._finish(polls.values())
        finally:
            stats.submits = ring.submit_calls()
            if in_main_thread:
                signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)

    def _finish(self, polls) -> None:
        """Close what is left, then let every operation still in the kernel complete.

        Their completions are reaped, not handled: the connections they belong to are closed.
        """
        cut = self.stop.past_deadline()  # what is left at the drain deadline is reset
        for conn in list(self.connections):
            if cut:
                toolkit.reset_on_close(conn.sock)
            self.close(conn, abortive=True)
        for operation in (self.accept_op, *polls):
            if operation is not None:
                self.ring.cancel(operation)
        deadline = time.monotonic() + 1.0
        while self.ring.pending() and time.monotonic() < deadline:
            self.ring.submit_and_wait(0.1)


def serve(listener, config, stats, stop, new_session):
    ring = uring.Ring(RING_ENTRIES)
    try:
        _Proactor(ring, listener, config, stats, stop, new_session).run()
    finally:
        ring.close()
