"""The models' toolkit: what every model uses to accept, count, close and stop.

A model's `serve(listener, config, stats, stop, new_session)` gets its listener, a `Stop` and a
session factory from the process entry point (iomodels/startup.py) and uses these pieces:
`Acceptor` (accept() with back-off and the stop case decided once),
`admit`/`release` around each connection, `connection_failed` when one ends with an exception,
`start_thread` for the daemon threads of a model. On SIGINT/SIGTERM,
`Stop.request()` shuts the listener down at once (new clients are refused, a thread blocked in
`accept` wakes with EINVAL); open connections may finish for `--drain-timeout` seconds, then
whatever is left is reset (`reset_on_close`, SO_LINGER 0: a RST), in every model alike. A FIN
would tell a peer whose reply was cut, or whose input was read and never answered, that its reply
had ended normally.

A model waits for the stop in its own way: event loops watch `stop.fileno()` (a pipe that becomes
readable, and stays readable, once a stop is requested); blocking models notice when their
`accept` fails and their connections, tracked with `stop.tracking(conn)`, are shut down by the
drain timer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import socket
import threading
import time

from collections.abc import Callable

from iomodels.addresses import address_family, format_address
from iomodels.linger import reset_on_close
from iomodels.serving import errnos
from iomodels.serving.config import ConfigError, ServerConfig
from iomodels.serving.core import EchoSession
from iomodels.serving.stats import Stats

log = logging.getLogger("iomodels")


class Stop:
    """A stop request, visible to threads (`requested`), event loops (`fileno()`) and sleepers."""

    def __init__(self, drain_timeout: float):
        self.drain_timeout = drain_timeout
        self.requested = False
        self.deadline = float("inf")  # monotonic time when draining ends
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._listeners: list[socket.socket] = []
        self._tracked: set[socket.socket] = set()
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._wake_read

    def watch_listener(self, listener: socket.socket) -> None:
        self._listeners.append(listener)

    def request(self) -> None:
        """Stop accepting now; close what is still open after the drain timeout. Idempotent.

        Called from the signal relay's thread (serving/signals.py), or by a supervisor deciding to
        stop; never from a signal handler: it starts the drain timer's thread.
        """
        if self.requested:
            return
        self.deadline = time.monotonic() + self.drain_timeout
        self.requested = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"!")
        for listener in self._listeners:
            # shutdown() on a listening socket wakes any thread blocked in accept() (EINVAL) and
            # makes the kernel refuse new connections, while the fd itself stays valid.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RD)
        if math.isfinite(self.drain_timeout):  # --drain-timeout inf: connections close when they will
            timer = threading.Timer(self.drain_timeout, self.close_tracked)
            timer.daemon = True
            timer.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is requested or `timeout` passes; return whether one was."""
        import select
        select.select([self._wake_read], [], [], timeout)
        return self.requested

    @contextlib.contextmanager
    def tracking(self, conn: socket.socket):
        """Let the drain timer shut down `conn`, waking a thread blocked on it."""
        with self._lock:
            self._tracked.add(conn)
        if self.past_deadline():
            _cut(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._tracked.discard(conn)

    def finish_by(self) -> float:
        """Monotonic time by which a model should have let go of every connection and thread."""
        return min(self.deadline, time.monotonic() + self.drain_timeout) + 1.0

    def past_deadline(self) -> bool:
        return self.requested and time.monotonic() >= self.deadline

    def close_tracked(self) -> None:
        """The drain deadline: wake the threads serving what is left, which then reset it.

        shutdown(SHUT_RD) wakes a thread blocked in recv() and sends nothing. A thread blocked in
        send() (its peer does not read) wakes only on SHUT_WR, whose FIN queues behind the output
        the peer is not taking, so the RST of the close that follows overtakes it.
        """
        with self._lock:
            tracked = list(self._tracked)
        for conn in tracked:
            _cut(conn)
        give_up = time.monotonic() + 0.2
        while time.monotonic() < give_up:
            with self._lock:
                tracked = [conn for conn in tracked if conn in self._tracked]
            if not tracked:
                return
            time.sleep(0.01)
        for conn in tracked:
            _shutdown_quietly(conn)

    def close(self) -> None:
        os.close(self._wake_read)
        os.close(self._wake_write)


def seconds_until(deadline: float) -> float | None:
    """A timeout for join(), wait_for(), poll() from a monotonic deadline: None when it is never
    (--drain-timeout inf), since those calls refuse an infinite number with OverflowError."""
    return None if deadline == math.inf else max(0.0, deadline - time.monotonic())


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _cut(conn: socket.socket) -> None:
    """Reset on close, and wake a thread blocked in recv() on `conn` (see Stop.close_tracked)."""
    reset_on_close(conn)
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RD)


class AcceptBackoff:
    """What to do when accept() fails: skip, pause, or let a bug propagate (see errnos.py).

    Out of descriptors, accept() fails at once every time it is called while the peer stays queued:
    retrying immediately is a busy loop (libuv, asyncio and trio all learned this). We pause for a
    delay that doubles up to one second, and log once per episode, not once per failure.
    """

    FIRST_DELAY = 0.05
    MAX_DELAY = 1.0

    def __init__(self, stats: Stats):
        self.stats = stats
        self.delay = 0.0
        self.failures_in_episode = 0

    def failed(self, exc: OSError) -> float:
        """Account for a failed accept; return how long to stop accepting (0: go on at once)."""
        self.stats.accept_errors += 1
        if exc.errno in errnos.ACCEPT_IGNORABLE:
            log.debug("accept: skipped a connection: %s", exc.strerror)
            return 0.0
        if exc.errno not in errnos.ACCEPT_CAPACITY:
            raise exc
        if not self.failures_in_episode:
            log.warning("accept: %s; pausing accepts until resources free up", exc.strerror)
        self.failures_in_episode += 1
        self.stats.accept_backoffs += 1
        self.delay = min(self.MAX_DELAY, max(self.FIRST_DELAY, self.delay * 2))
        return self.delay

    def succeeded(self) -> None:
        if self.failures_in_episode:
            log.info("accept: accepting again after %d failed attempts", self.failures_in_episode)
            self.failures_in_episode = 0
            self.delay = 0.0


class Acceptor:
    """accept() with each outcome decided once, for blocking and non-blocking listeners alike.

    `accept()` returns the next connection; or a float: stop accepting for that many seconds (out
    of descriptors, see AcceptBackoff); or None: nothing more to accept now, because the queue is
    empty (a non-blocking listener) or because the stop shut the listener down (`stop.requested`
    says which: Stop.request() shuts the listener down, so a blocked accept() wakes with EINVAL).
    Errors that mean a bug propagate.
    """

    def __init__(self, listener: socket.socket, stats: Stats, stop: Stop):
        self.listener = listener
        self.stop = stop
        self.backoff = AcceptBackoff(stats)

    def accept(self) -> socket.socket | float | None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:
                delay = self.failed(exc)
                if delay is None or delay:
                    return delay
                continue
            self.succeeded()
            return conn

    def failed(self, exc: OSError) -> float | None:
        """An accept() that failed, here or in the kernel (io_uring's accept completions): None if
        there is nothing more to accept now, else the pause before accepting again (0: at once)."""
        if exc.errno in errnos.WOULD_BLOCK or self.stop.requested:
            return None
        return self.backoff.failed(exc)

    def succeeded(self) -> None:
        self.backoff.succeeded()


def session_factory(config: ServerConfig) -> Callable[[], EchoSession]:
    """What startup hands each model: a new protocol session per connection, with config's marks.

    Tests hand a model another factory (a faulty session) through the same `new_session` argument.
    """
    return functools.partial(EchoSession, config.high_water, config.low_water)


def admit(conn: socket.socket, config: ServerConfig, stats: Stats) -> bool:
    """Count a new connection, or close it at once if --max-connections is reached."""
    stats.accepts += 1
    if config.max_connections is not None and stats.connections_open >= config.max_connections:
        stats.rejected_max_connections += 1
        abort(conn)
        return False
    stats.connections_open += 1
    # One reply per request: Nagle's algorithm would hold a small reply back for an ACK.
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


def release(conn: socket.socket, stats: Stats, reset: bool = False) -> None:
    """Close an admitted connection and count it; `reset`: with a RST (see `abort`)."""
    stats.connections_open -= 1
    stats.connections_closed += 1
    if reset:
        reset_on_close(conn)
    conn.close()


def abort(conn: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): for peers we refuse, so no TIME_WAIT piles up on our side."""
    reset_on_close(conn)
    conn.close()


def connection_failed(exc: BaseException, stats: Stats) -> None:
    """A connection ended with an exception: quiet for peer errors, a traceback for our bugs."""
    if isinstance(exc, OSError) and exc.errno in errnos.PEER_GONE:
        stats.peer_errors += 1
        log.debug("connection ended by the peer: %s", exc.strerror)
    else:
        stats.internal_errors += 1
        log.error("connection aborted by an internal error", exc_info=exc)


def open_listener(config: ServerConfig, listen: bool = True) -> socket.socket:
    """Bind (and listen on) config's address; `listen=False` only holds the port (--workers).

    The family follows the address: AF_INET6 for an IPv6 one (`--host ::1`), AF_INET otherwise.
    """
    listener = socket.socket(address_family(config.host), socket.SOCK_STREAM)
    try:
        # Restarting a server must not wait for old connections' TIME_WAIT to expire.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.workers > 1:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((config.host, config.port))
        if listen:
            listener.listen(config.backlog)
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {format_address(config.host, config.port)}: {exc.strerror}") from None
    return listener


def stop_processes(pids, deadline: float) -> None:
    """SIGTERM each child process, reap them until `deadline` (monotonic), SIGKILL what is left."""
    pending = set(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            pending.discard(pid)
        time.sleep(0.02)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def start_thread(target, *args, name: str | None = None) -> threading.Thread:
    """Start a daemon thread. It is born with its creator's signal mask, so with the signals that
    only the relay takes blocked (serving/signals.py)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread
