"""What every readiness model shares: connections, the non-blocking calls, and the loop around a wait.

The readiness family (nonblocking, select, poll, epoll, epoll-et, sigio) differs in one thing only:
how the process learns which sockets it can use without blocking. Everything else is here, once:
- "try first, then wait": every `accept`/`recv`/`send` is non-blocking and its EAGAIN (through
  `errnos.WOULD_BLOCK`) is a normal answer, counted, never an error;
- a `Connection` (socket, `EchoSession`, the ticks `_sweep.Sweep` counts) per descriptor, in a dict;
- what a connection wants to wait for, derived from its session after every call: readable unless
  back-pressure paused it (or the peer finished sending), writable only while output is pending;
- accepting, through `toolkit.Acceptor` (when descriptors run out the listener leaves the wait
  set for the pause, so a full accept queue cannot spin us) and `toolkit.admit`;
- `--idle-timeout` and `--max-connection-age` (the shared `Sweep`), the drain on stop, closing;
- the hot path: a request on a connection with nothing queued (the common case by far) is read
  into one reused buffer and answered with one `send`, counters added once per wake-up (`echo`,
  `dispatch`); everything else takes the general path (`service`). The saving is measured in
  BENCHMARKS.md ("Where the time goes").

A model subclasses `ReadinessLoop` and supplies the wait: `watch`/`rewatch`/`unwatch` (what the
kernel should report for a descriptor) and `wait(timeout)`, which waits and hands what is ready to
`dispatch` (or to `service` directly). `edge = True` for models told only about changes (epoll-et,
sigio): they must drain what they were told about, because no second notice will come.
"""

from __future__ import annotations

import abc
import logging
import select
import time

from iomodels.serving import errnos, toolkit
from iomodels.serving.core import EchoSession
from iomodels.serving.models._sweep import Sweep, unsent_on_fd

log = logging.getLogger("iomodels")

INFINITY = float("inf")


class Connection:
    __slots__ = ("sock", "fd", "session", "mask", "quiet_ticks", "started", "unsent_mark")

    def __init__(self, sock, fd: int, session: EchoSession, mask: int, now: float):
        self.sock = sock
        self.fd = fd
        self.session = session
        self.mask = mask  # what the model was last told to watch for, in its own bits
        self.quiet_ticks = 0  # sweeps since data last arrived (see _sweep.py)
        self.unsent_mark = 0
        self.started = now


class ReadinessLoop(abc.ABC):
    # Bits for "tell me when readable/writable", and which reported bits mean it: poll()'s, which
    # epoll (EPOLLIN == POLLIN...) and a signal's si_band share; select and nonblocking ignore them.
    READ = select.POLLIN
    WRITE = select.POLLOUT
    READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
    WRITABLE = select.POLLOUT | select.POLLHUP | select.POLLERR
    edge = False
    # Edge-triggered: a read that returns less than it asked for drained the socket (epoll(7):
    # "...you can be sure of having exhausted the read I/O space"), which saves the recv that would
    # only say EAGAIN (with its exception, a quarter of a request's CPU). But one edge can announce
    # data and the peer's FIN, still unread after the short read: these reported bits mean "read
    # on anyway". All of them by default; epoll-et narrows them down with EPOLLRDHUP.
    SHORT_READ_UNSURE = ~0
    name = "readiness"

    def __init__(self, listener, config, stats, stop, new_session):
        self.listener = listener
        self.new_session = new_session
        self.listener_fd = listener.fileno()
        self.config = config
        self.stats = stats
        self.stop = stop
        self.recv_size = config.recv_size
        # Every recv lands here and is copied out at once: no recv_size allocation per call.
        self.buffer = bytearray(config.recv_size)
        self.conns: dict[int, Connection] = {}
        self.acceptor = toolkit.Acceptor(listener, stats, stop)
        self.now = time.monotonic()
        self.listening = False
        self.draining = False
        self.done = False
        self.accept_resume_at = 0.0
        self.sweeper = Sweep(config, stats, unsent_on_fd)
        self.sweep_at = INFINITY  # no sweeps while there is no connection to sweep
        # Wake up for chores (sweeps, resuming accepts, the end of the drain) no earlier than this.
        self.next_due = INFINITY
        listener.setblocking(False)

    # --- how a model waits: the part that differs, each backend's own (abstract here) -------

    @abc.abstractmethod
    def watch(self, fd: int, mask: int) -> None:
        """Start reporting `fd` when it is ready for `mask`."""

    @abc.abstractmethod
    def rewatch(self, fd: int, mask: int) -> None:
        """What `fd` waits for changed."""

    @abc.abstractmethod
    def unwatch(self, fd: int, closing: bool = False) -> None:
        """Stop reporting `fd` (`closing`: it is about to be closed)."""

    @abc.abstractmethod
    def wait(self, timeout: float | None) -> None:
        """Wait up to `timeout` seconds (None: until something happens) and handle what is ready."""

    @abc.abstractmethod
    def close_waiter(self) -> None:
        """Release what the wait needs (the epoll descriptor, blocked signals...)."""

    def fits(self, sock) -> bool:
        """Whether the wait can hold this new connection's descriptor (select's cannot, above
        FD_SETSIZE: it refuses the connection itself and says no)."""
        return True

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        stats = self.stats
        try:
            self.watch(self.stop.fileno(), self.READ)
            self.listening = True
            self.watch(self.listener_fd, self.READ)
            if self.edge:
                self.accept()  # clients that queued before we watched will not be announced
            while not self.done:
                stats.loop_iterations += 1
                timeout = None if self.next_due == INFINITY else max(0.0, self.next_due - self.now)
                self.wait(timeout)
                self.now = time.monotonic()
                if self.now >= self.next_due:
                    self.chores()
        finally:
            cut = self.stop.past_deadline()  # what is left at the drain deadline is reset
            for conn in list(self.conns.values()):
                if cut:
                    toolkit.reset_on_close(conn.sock)
                self.close(conn)
            self.close_waiter()

    def dispatch(self, events) -> None:
        """Handle `(fd, reported_bits)` pairs, as poll() and epoll_wait() return them.

        A connection that waits only to read (nothing queued for it, not paused) takes the short
        path, `echo`; anything else goes through `service`. Echoed requests are counted once per
        wake-up, not once each: counters are attribute writes, and this is the hot loop.
        """
        stats = self.stats
        if not events:
            stats.empty_wakeups += 1
            return
        stats.events += len(events)
        conns, echo, service = self.conns, self.echo, self.service
        read, readable, writable = self.READ, self.READABLE, self.WRITABLE
        edge, unsure, full = self.edge, self.SHORT_READ_UNSURE, self.recv_size
        echoed = echoed_bytes = 0
        for fd, bits in events:
            conn = conns.get(fd)
            if conn is None:
                self.other_event(fd)
            elif conn.mask == read and bits & readable:
                count = echo(conn)
                if count:
                    echoed += 1
                    echoed_bytes += count
                    # Edge-triggered, no second notice will come: read on until EAGAIN, unless
                    # this read proved the socket drained (see SHORT_READ_UNSURE).
                    if edge and (count == full or bits & unsure):
                        service(conn, True, False)
            else:
                service(conn, bits & readable, bits & writable)
        stats.recv_calls += echoed
        stats.send_calls += echoed
        stats.bytes_in += echoed_bytes
        stats.bytes_out += echoed_bytes

    def other_event(self, fd: int) -> None:
        if fd == self.listener_fd:
            self.accept()
        else:
            # The stop pipe (or a connection closed earlier in this batch): see chores().
            self.next_due = 0.0

    def chores(self) -> None:
        """Everything that is not I/O: starting the drain, resuming accepts, timeouts, finishing."""
        now = self.now
        if self.stop.requested and not self.draining:
            self.draining = True
            # The stop pipe stays readable and a shut-down listener reports POLLHUP forever:
            # both must leave the wait set, or a level-triggered wait would return at once, always.
            self.unwatch(self.stop.fileno())
            self.stop_listening()
        if self.draining:
            if not self.conns or now >= self.stop.deadline:
                self.done = True
                return
        elif not self.listening and now >= self.accept_resume_at:
            self.listening = True
            self.watch(self.listener_fd, self.READ)
            self.accept()
        if now >= self.sweep_at:
            for conn in self.sweeper.expired(self.conns.values()):
                self.close(conn)
            self.sweep_at = now + self.sweeper.interval if self.conns else INFINITY
        due = self.sweep_at
        if self.draining:
            due = min(due, self.stop.deadline)
        elif not self.listening:
            due = min(due, self.accept_resume_at)
        self.next_due = due

    # --- accepting ---------------------------------------------------------------------------

    def stop_listening(self) -> None:
        if self.listening:
            self.listening = False
            self.unwatch(self.listener_fd)

    def accept(self) -> None:
        """Accept until EAGAIN (an edge-triggered listener announces a queue once, not per client)."""
        if not self.listening:
            return
        config, stats = self.config, self.stats
        while True:
            sock = self.acceptor.accept()
            if sock is None:
                if self.stop.requested:  # the drain begins
                    self.next_due = 0.0
                return
            if isinstance(sock, float):
                # Out of descriptors: the queued client stays queued and the listener stays
                # readable, so it must leave the wait set or every wait returns at once.
                self.stop_listening()
                self.accept_resume_at = self.now + sock
                self.next_due = min(self.next_due, self.accept_resume_at)
                return
            if not self.fits(sock) or not toolkit.admit(sock, config, stats):
                continue
            sock.setblocking(False)
            fd = sock.fileno()
            conn = Connection(sock, fd, self.new_session(), self.READ, self.now)
            self.conns[fd] = conn
            self.watch(fd, self.READ)
            if self.sweeper.interval is not None and self.sweep_at == INFINITY:
                self.sweep_at = self.now + self.sweeper.interval
                self.next_due = min(self.next_due, self.sweep_at)
            if self.edge:
                # The request may already be here, and it arrived before we watched: no notice.
                self.service(conn, True, False)

    # --- one connection ----------------------------------------------------------------------

    def echo(self, conn: Connection) -> int:
        """The common case: a request for a connection with nothing queued, so the reply goes
        straight out: `recv_into` the reused buffer, the session's reply, one `send`; the session
        keeps only what the kernel did not take. Returns the bytes echoed, for `dispatch` to
        count; any other outcome (nothing to read after all, end of input, an error, a reply the
        kernel did not take whole) is counted and finished here as the general path would, and 0
        is returned."""
        session = conn.session
        count = sent = 0
        try:
            count = conn.sock.recv_into(self.buffer)
            if count:
                conn.quiet_ticks = 0
                reply = session.reply_to(self.buffer[:count])
                sent = conn.sock.send(reply)
                if sent == count:
                    return count
            else:
                session.receive_eof()
        except Exception as exc:
            # EAGAIN from recv_into (count stays 0) or from send (sent stays 0) is a normal
            # answer; anything else ends this connection.
            if not (isinstance(exc, OSError) and exc.errno in errnos.WOULD_BLOCK):
                self.fail(conn, exc)
                return 0
        stats = self.stats
        stats.recv_calls += 1
        if not count:
            if session.eof_received:
                self.close(conn)  # nothing was queued: the connection is finished
            else:
                stats.recv_eagain += 1
            return 0
        # The send buffer is full: the session keeps the rest of the reply, and the general path
        # makes the connection wait until it can write (edge-triggered: and reads on).
        session.keep(reply[sent:])
        stats.bytes_in += count
        stats.send_calls += 1
        stats.bytes_out += sent
        if sent:
            stats.send_partial += 1
        else:
            stats.send_eagain += 1
        self.service(conn, False, False)
        return 0

    def service(self, conn: Connection, readable, writable) -> None:
        """Do what readiness allows on `conn`; then close it, or update what it waits for."""
        session = conn.session
        try:
            if writable and session.wants_write:
                self.flush(conn)
            if session.wants_read and (readable or self.edge):
                if self.edge:
                    # Until EAGAIN. An edge model also reads after a write event: sending may have
                    # resumed a paused reader whose data arrived (and was announced) long ago.
                    while self.receive(conn) and session.wants_read:
                        pass
                else:
                    self.receive(conn)
        except Exception as exc:
            self.fail(conn, exc)
            return
        if session.finished:
            self.close(conn)
            return
        mask = (self.READ if session.wants_read else 0) | (self.WRITE if session.wants_write else 0)
        if mask != conn.mask:
            conn.mask = mask
            self.rewatch(conn.fd, mask)

    def receive(self, conn: Connection) -> bool:
        """One recv, its reply sent at once; False when the socket had nothing (EAGAIN) or ended."""
        stats = self.stats
        stats.recv_calls += 1
        try:
            count = conn.sock.recv_into(self.buffer)
        except OSError as exc:
            if exc.errno not in errnos.WOULD_BLOCK:
                raise
            stats.recv_eagain += 1
            return False
        if not count:
            conn.session.receive_eof()
            return False
        stats.bytes_in += count
        conn.quiet_ticks = 0
        conn.session.receive_data(self.buffer[:count])
        self.flush(conn)
        return True

    def flush(self, conn: Connection) -> None:
        """Send pending output until it is all gone or the send buffer is full (EAGAIN)."""
        session, stats = conn.session, self.stats
        pending = session.pending()
        while pending:
            stats.send_calls += 1
            try:
                sent = conn.sock.send(pending)
            except OSError as exc:
                if exc.errno not in errnos.WOULD_BLOCK:
                    raise
                stats.send_eagain += 1
                return
            stats.bytes_out += sent
            if sent < len(pending):
                stats.send_partial += 1
            session.sent(sent)
            pending = session.pending()

    def fail(self, conn: Connection, exc: Exception) -> None:
        toolkit.connection_failed(exc, self.stats)
        self.close(conn)

    def close(self, conn: Connection) -> None:
        if self.conns.get(conn.fd) is not conn:
            return  # already closed
        del self.conns[conn.fd]
        self.unwatch(conn.fd, closing=True)
        toolkit.release(conn.sock, self.stats)
        if not self.listening:
            # A descriptor is free again: resume accepting at once if it was out of them,
            # or finish the drain if that was the last connection.
            self.accept_resume_at = 0.0
            self.next_due = 0.0

    def scan(self) -> None:
        """Try everything once, waiting for nothing: accept, then every connection both ways."""
        self.accept()
        # A snapshot: service() may close connections, and a dict must not change while iterated.
        for conn in list(self.conns.values()):
            self.service(conn, True, True)


def serve_with(loop_class, listener, config, stats, stop, new_session) -> None:
    loop_class(listener, config, stats, stop, new_session).run()
