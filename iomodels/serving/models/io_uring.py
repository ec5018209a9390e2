"""Asynchronous I/O with io_uring: the kernel does the copy, then tells us (tutorial section 1.4).

This is the model of section 1.4, "the kernel copies the data into the user's memory, then tells
the user it is done": the completion model, a "proactor". We do not ask whether a socket is ready
and then read it ourselves, as every readiness model does (select, poll, epoll, and the asyncio
and uvloop loops, where the copy happens in our thread after the wake-up). We hand the kernel
whole operations: "accept on this listener", "receive into a buffer", "send these bytes". The
kernel waits for the data *and* copies it into our buffer, and then posts a completion with the
result: a new fd, a byte count, or a negative errno.

Who waits where: one thread, in `io_uring_enter()`, for all connections: `Proactor.turn` is the
whole loop. Operations are written into a submission queue shared with the kernel and published
together, once per turn; completions are read from a shared completion queue, all the ready ones
at once. The ring is set up for one thread (SINGLE_ISSUER) with DEFER_TASKRUN: the kernel does the
work that finishes an operation (copying a receive's data, posting its completion) only when we
ask for completions, instead of interrupting us to do it. So a turn costs two enters at most
(publish, then wait: a wait with completions already posted needs none), however many requests
it carries; epoll pays `epoll_wait` plus a `recv` and a `send` per request.

One completion per request. A request's receive completes, and its handler hands the reply to the
kernel as a send whose success is not reported (`send_all` with skip_success in the binding): a
successful send costs no completion, no Python object and no handler call; a failed one comes
back to `send_failed`, which closes the connection. The binding queues a socket's sends behind one
another (bytes never overtake each other) and submits the rest of a partial send itself, from C.

What it costs, and why it is not simply cheaper than epoll: most of a request's CPU is the kernel's
TCP work, the same whoever asks for it (the send transmits over loopback and, in the same call,
runs the peer's receive path). io_uring saves the crossings into the kernel, not that work, and
brings its own: a receive that finds no data arms a poll on the socket, the wake-up queues task
work, and that work copies the data, picks a provided buffer and posts the completion; on a
small message this costs about what the saved crossings did. In user space every completion is
a Python object whose fields are read through the binding, which keeps each operation's buffer
and handler alive until the kernel is done with them and guards that bookkeeping with locks: on
CPython before 3.13 each one is a semaphore and a clock read (the interpreter computes a deadline
even for an untimed wait), a cost epoll's plain `recv`/`send` calls do not have; the replies of
a turn are therefore prepared in one call, which takes those locks once. Measured side by side
(BENCHMARKS.md, "Goals"): about 1.05-1.08x epoll's CPU per request on CPython 3.11, 1.03x on
3.13: completions cost what readiness costs here, no less, and the kernel's part is why.

Two receive strategies (`--uring-mode`, `_uring_connections.py`), because each wins somewhere:
- multishot (the default): one receive per connection stays armed, and the kernel takes a buffer
  from a shared ring of provided buffers only when data arrives: no receive to submit per request,
  and memory does not grow with idle connections. When the ring runs dry a receive ends with
  ENOBUFS and is armed again; we copy the bytes out, which hands the buffer back. The buffers are
  small (`--recv-size`/32: see back-pressure), so a big message comes in many completions; their
  replies still leave in one send, as a completion flagged SOCK_NONEMPTY (the socket holds more)
  holds its reply back for the next one.
- oneshot: each connection has its own `--recv-size` buffer (an anonymous mapping, resident only
  once the kernel writes into it) and submits a new receive after each completion: one more
  operation per request, but a big message arrives in few completions.

How it fails, and what we do: a negative result is an error on that one connection (a reset or a
broken pipe closes it quietly, anything else is logged). Back-pressure without send completions:
a connection counts the bytes it handed over; once more than `--high-water` are unconfirmed it
pauses reading (multishot: cancels its receive) and reports its sends ("fences": a fence's
completion confirms it and every send before it), until the confirmed mark comes within
`--low-water` of what was handed over. A cancel does not stop a pass already under way: while the
socket has data, the kernel fills up to 32 buffers in one go (MULTISHOT_MAX_RETRY in Linux's
io_uring/net.c), and those bytes are ours to take; buffers of `--recv-size`/32 bound that by about
one `--recv-size` per paused peer, as oneshot's receive in flight. End of input: an empty fence
says when the replies before it are out, then the connection closes. A connection's descriptor is
closed through the ring, behind its queued sends: until then its number is not free, so no queued
operation can land on a socket that reuses it. io_uring may be forbidden (a seccomp profile,
`kernel.io_uring_disabled`): then `iomodels serve` says so in one line and exits with status 2.
SIGTERM wakes the wait through a poll operation on the stop pipe, which the signal relay's thread
writes to.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import time

from iomodels.serving import toolkit, uring
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._sweep import Sweep
from iomodels.serving.models._uring_connections import (Connection, MultishotConnection,
                                                        OneshotConnection, unsent)

MODEL = ModelInfo(
    kind="completion",
    name="io_uring", family="asynchronous I/O, completion-based (proactor)", section="1.4",
    variants=(("--uring-mode", "oneshot"), ("--uring-mode", "multishot")),
    waits_in="io_uring_enter(): submits a batch, waits for completions (Proactor.turn)",
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
_MORE = uring.MORE
CONNECTIONS = {"multishot": MultishotConnection, "oneshot": OneshotConnection}


def provided_buffer_size(recv_size: int) -> int:
    return max(1, min(recv_size // PASS_BUFFERS, MAX_PROVIDED_BUFFER))


class Proactor:
    """The loop: submit, wait for completions, call each one's handler, run timers.

    It waits in one place, `turn()`: `self.ring.submit_and_wait(timeout)`; `run()` turns it.
    """

    def __init__(self, ring: uring.Ring, listener: socket.socket, config, stats, stop: toolkit.Stop,
                 new_session):
        self.new_session = new_session
        self.ring, self.listener, self.config, self.stats, self.stop = ring, listener, config, stats, stop
        self.multishot = config.uring_mode == "multishot"
        self.connection_class = CONNECTIONS[config.uring_mode]
        # The shared ring of provided buffers the multishot receives take from.
        self.buffers = ring.buffer_group(provided_buffer_size(config.recv_size), BUFFER_COUNT) \
            if self.multishot else None
        self.connections: set[Connection] = set()
        self.accept_op: uring.Completion | None = None
        self.acceptor = toolkit.Acceptor(listener, stats, stop)
        self.sweep = Sweep(config, stats, unsent)
        self.timers: list[tuple[float, int, object]] = []  # a heap of (monotonic time, seq, callable)
        self._timer_seq = itertools.count()
        self.draining = False

    # -- accepting -------------------------------------------------------------------------

    def arm_accept(self) -> None:
        if not self.stop.requested:
            self.accept_op = self.ring.accept(self.listener.fileno(), self.multishot, self.accepted)

    def accepted(self, completion: uring.Completion) -> None:
        res = completion.res
        final = completion is self.accept_op and not completion.flags & _MORE
        if final:
            self.accept_op = None
        if res >= 0:
            self.acceptor.succeeded()
            self.admit(socket.socket(self.listener.family, socket.SOCK_STREAM, 0, fileno=res))
            delay = 0.0
        else:
            delay = self.acceptor.failed(OSError(-res, os.strerror(-res)))
            if delay is None:
                return  # the stop shut the listener down: pending accepts fail (EINVAL)
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
        conn = self.connection_class(self, sock)
        self.connections.add(conn)
        conn.arm_receive()

    # -- closing ---------------------------------------------------------------------------

    def close(self, conn: Connection, abortive: bool = False) -> None:
        """Release `conn`. Abortive: operations may be in flight, and are made to finish first."""
        if conn.closed:
            return
        conn.closed = True
        self.connections.discard(conn)
        if abortive:
            # shutdown() completes a pending receive (EOF) or send (EPIPE) at once; close() alone
            # would not, the ring holding its own reference to the socket. SHUT_WR (a FIN) only
            # for a send in flight: its FIN queues behind the output the peer is not taking.
            with contextlib.suppress(OSError):
                # SHUT_WR (a FIN) only while sends may be in flight: that FIN queues behind the
                # output the peer is not taking, and wakes them with EPIPE.
                conn.sock.shutdown(socket.SHUT_RDWR if conn.handed > conn.confirmed else socket.SHUT_RD)
        # The ring closes the descriptor behind the sends queued on it; until then the number is
        # not free, so no operation of ours can land on a socket that reuses it.
        self.ring.close_after_sends(conn.sock.detach())
        toolkit.release(conn.sock, self.stats)
        conn.drop_references()

    def fail(self, conn: Connection, exc: Exception) -> None:
        toolkit.connection_failed(exc, self.stats)
        self.close(conn, abortive=True)

    # -- timers ----------------------------------------------------------------------------

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

    def stop_requested(self, completion: uring.Completion) -> None:
        self.draining = True
        if self.accept_op is not None:
            self.ring.cancel(self.accept_op)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        ring, stats = self.ring, self.stats
        stop_poll = ring.poll_in(self.stop.fileno(), self.stop_requested)
        try:
            self.arm_accept()
            if self.sweep.interval:
                self.call_at(time.monotonic() + self.sweep.interval, self._sweep)
            timeout = self._run_timers()
            while not self.draining or (self.connections and time.monotonic() < self.stop.deadline):
                self.turn(timeout)
                timeout = self._run_timers() if self.timers or self.draining else None
            self._finish(stop_poll)
        finally:
            stats.submits = ring.submit_calls()

    def turn(self, timeout: float | None) -> None:
        """One turn of the loop: THE WAIT, then every completion it brought handled."""
        ring, stats = self.ring, self.stats
        # Publish every operation the handlers prepared, then sleep in io_uring_enter until a
        # completion is ready (or `timeout` s pass); all the ready ones come back at once.
        completions = ring.submit_and_wait(timeout)
        stats.wait_calls += 1
        stats.loop_iterations += 1
        stats.completions += len(completions)
        stats.events += len(completions)
        if not completions:
            stats.empty_wakeups += 1
        elif not stats.loop_iterations & 127:  # the ring counts its own enters (a dict)
            stats.submits = ring.submit_calls()
        for completion in completions:
            handler = completion.user_data
            try:
                handler(completion)
            except Exception as exc:
                owner = getattr(handler, "__self__", None)
                if not isinstance(owner, Connection):
                    raise
                self.fail(owner, exc)

    def _finish(self, stop_poll) -> None:
        """Close what is left, then let every operation still in the kernel complete.

        Their completions are reaped, not handled: the connections they belong to are closed.
        """
        cut = self.stop.past_deadline()  # what is left at the drain deadline is reset
        for conn in list(self.connections):
            if cut:
                toolkit.reset_on_close(conn.sock)
            self.close(conn, abortive=True)
        for operation in (self.accept_op, stop_poll):
            if operation is not None:
                self.ring.cancel(operation)
        deadline = time.monotonic() + 1.0
        while self.ring.pending() and time.monotonic() < deadline:
            self.ring.submit_and_wait(0.1)


def serve(listener, config, stats, stop, new_session):
    ring = uring.Ring(RING_ENTRIES)
    try:
        Proactor(ring, listener, config, stats, stop, new_session).run()
    finally:
        ring.close()
