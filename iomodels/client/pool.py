"""A client-side connection pool: a few persistent connections to one echo server, shared by threads.

Why pool: opening a TCP connection costs a handshake (one round trip before the first byte), two
sockets' worth of kernel state, and on the side that closes first a TIME_WAIT entry that holds a
port for a minute; a client that connects per request pays all of that every time and can run out
of ephemeral ports (`iomodels bench --connect-per-request` measures it). A pool pays it once per
connection and then reuses the connection for request after request.

What a pool must get right, and how this one does:
- **Bounded**: at most `max_size` connections, open or being opened. A caller that finds them all
  busy waits for at most `acquire_timeout`, then gets `PoolTimeout` ("all N connections busy for
  T s"), never an unbounded wait.
- **Fair: first come, first served.** Waiting callers queue in arrival order, and a connection
  returned (or a slot freed) while anyone waits is handed straight to the longest waiter; it never
  goes back on the shelf where whichever thread happens to run next would take it ("barging").
  With a plain condition variable a returned connection goes to the first thread the scheduler
  runs: a caller that just returned one often takes it straight back, and an unlucky waiter can
  wait the whole timeout while the others are served (p99 of 0, a maximum of 1.5 s). The hand-off
  queue is HikariCP's (`ConcurrentBag`'s handoffQueue) and psycopg_pool's (`_waiting`): a new
  caller takes an idle connection only when nobody is queued before it.
- **Never hand out a dead connection, cheaply**: a server may close a connection while it sits idle
  in the pool (its `--idle-timeout`, a restart, a middlebox). The pool cannot be told: a closed TCP
  connection only shows as a FIN (or RST) waiting in the receive buffer. So before handing out one
  that sat idle longer than `peek_after` seconds it peeks with a non-blocking `recv(1, MSG_PEEK)`:
  "would block" means alive and quiet; EOF, a reset or unexpected bytes (the protocol only replies)
  mean discard it and take another. A connection returned a moment ago, or handed from one caller
  to the next, skips the system call: the retry below covers the rare one that died meanwhile.
- **The race the peek cannot close**: the server may close just after the peek. The request then
  fails with EPIPE/ECONNRESET or EOF before any reply byte arrived; since a request to this server
  is idempotent, it is retried once on a fresh connection. A failure after part of the reply, or on
  a fresh connection, is the caller's error (the connection is discarded either way).
- **Idle connections expire** after `idle_expiry` seconds: checked lazily whenever a connection is
  taken or returned, so no reaper thread. Idle connections are reused last-in first-out, so a
  burst's surplus connections stay idle at the bottom and expire, while the busy few stay warm.

Statistics (`pool.stats`) say how well it worked: connections created, reused, discarded (found
dead or broken), expired, retried, and how long each checkout waited (`wait_times`: one sample per
checkout, zero when a connection was free, so percentiles describe every request).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from iomodels.client.echo import EchoClient


class PoolTimeout(TimeoutError):
    """Every connection stayed busy for the whole `acquire_timeout`."""


class PoolClosed(RuntimeError):
    """The pool was used after `close()`."""


class PoolStats:
    """What the pool did. Updated under the pool's lock; read whenever you like."""

    def __init__(self) -> None:
        self.created = 0    # connections opened
        self.reused = 0     # checkouts served by an idle connection
        self.discarded = 0  # connections found closed or broken, closed and replaced
        self.expired = 0    # idle connections closed after idle_expiry
        self.retried = 0    # requests retried on a fresh connection after a stale one failed
        self.waits = 0      # checkouts that found every connection busy and had to wait
        self.timeouts = 0   # checkouts that gave up with PoolTimeout
        self.checkouts = 0
        self.peeks = 0      # liveness checks made (only for connections idle longer than peek_after)
        self.handoffs = 0   # connections or slots handed straight to a waiting caller
        # Seconds each recent checkout waited, 0.0 when a connection was free. Bounded, so a
        # long-lived pool does not grow: the most recent samples are what percentiles need.
        self.wait_times: collections.deque[float] = collections.deque(maxlen=100_000)

    def as_dict(self) -> dict:
        counters = {name: value for name, value in vars(self).items() if name != "wait_times"}
        return counters


class _Idle:
    __slots__ = ("client", "since")

    def __init__(self, client: EchoClient, since: float):
        self.client = client
        self.since = since


class _Waiter:
    """A caller queued for a connection: the one handed to it (an _Idle, or SLOT to open one in)."""
    __slots__ = ("event", "got")

    def __init__(self):
        self.event = threading.Event()
        self.got: _Idle | object | None = None


SLOT, CLOSED = object(), object()


def peer_closed(sock: socket.socket) -> bool:
    """True if an idle connection is unusable: the peer closed or reset it, or sent bytes unasked.

    A socket with a timeout polls *before* each recv (CPython's sock_call), so MSG_DONTWAIT alone
    would wait up to the timeout on a healthy connection: switch to non-blocking for the peek.
    """
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0)
        sock.recv(1, socket.MSG_PEEK)
        return True  # EOF (b"") or data nobody asked for: either way the stream is not ours to use
    except BlockingIOError:
        return False
    except OSError:
        return True  # ECONNRESET and friends, or EBADF: a caller closed it inside `connection()`
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


class ConnectionPool:
    """A bounded, thread-safe pool of `EchoClient` connections to one server."""

    def __init__(self, host: str, port: int, max_size: int = 8, acquire_timeout: float = 5.0,
                 idle_expiry: float = 30.0, request_timeout: float = 10.0, peek_after: float = 1.0):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        if not acquire_timeout >= 0 or not idle_expiry > 0 or not request_timeout > 0 or not peek_after >= 0:
            raise ValueError("acquire_timeout and peek_after must be >= 0; idle_expiry and request_timeout "
                             "must be > 0 seconds")
        self.peek_after = peek_after
        self.host, self.port = host, port
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.idle_expiry = idle_expiry
        self.request_timeout = request_timeout
        self.stats = PoolStats()
        self._idle: list[_Idle] = []  # a stack: the most recently returned is reused first
        self._waiting: collections.deque[_Waiter] = collections.deque()  # callers, longest waiting first
        self._open = 0  # connections open or being opened, idle or checked out
        self._closed = False
        self._lock = threading.Lock()  # guards the shelf, the queue and the counts

    # -- the public interface ---------------------------------------------------------------------

    def request(self, data: bytes) -> bytes:
        """Send `data` on a pooled connection and return the whole reply (len(data) bytes)."""
        client, reused = self._checkout()
        while True:
            try:
                reply = client.request(data)
            except BaseException as exc:
                # Stale: the server closed it after our peek. Retry once, and only if nothing of
                # the reply arrived (a cut reply means the server failed mid-request: not ours to
                # hide). The slot is kept for the retry: it does not queue behind other callers.
                retry = reused and isinstance(exc, ConnectionError) and not client.reply_so_far
                self._discard(client, keep_slot=retry)
                if not retry:
                    raise
                with self._lock:
                    self.stats.retried += 1
                client, reused = self._connect(), False
                continue
            self._checkin(client)
            return reply

    @contextlib.contextmanager
    def connection(self) -> Iterator[EchoClient]:
        """Hold one connection for several requests; it goes back to the pool afterwards, or is
        discarded if the block raised (its stream may hold half a reply)."""
        client, _ = self._checkout()
        try:
            yield client
        except BaseException:
            self._discard(client)
            raise
        self._checkin(client)

    def close(self) -> None:
        """Close idle connections now, busy ones when they are returned; later checkouts fail."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            while self._waiting:
                self._hand(CLOSED)
        for entry in idle:
            entry.client.close()

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Connections open (idle or checked out) or being opened."""
        return self._open

    @property
    def idle(self) -> int:
        return len(self._idle)

    # -- checking out and in ----------------------------------------------------------------------

    def _checkout(self) -> tuple[EchoClient, bool]:
        """A live connection and whether it was reused; queues while all `max_size` are busy."""
        start = time.monotonic()
        waited = False
        while True:
            with self._lock:
                got = self._take_or_queue()
            if isinstance(got, _Waiter):
                waited = True
                got = self._wait(got, start + self.acquire_timeout)
            # Waiting ends here: connecting or peeking is not waiting for a busy connection.
            wait = time.monotonic() - start if waited else 0.0
            if got is SLOT:  # a free slot: connect outside the lock, it may take a while
                client = self._connect()
                self._record_checkout(wait, reused=False)
                return client, False
            # The peek is a system call: outside the lock too. This connection is ours alone now.
            if not self._needs_peek(got) or not peer_closed(got.client.sock):
                self._record_checkout(wait, reused=True)
                return got.client, True
            if not waited:
                self._discard(got.client)  # try the next idle one, or open one
                continue
            # Handed to us after a wait, but dead: keep the slot (and our turn) for a new connection.
            self._discard(got.client, keep_slot=True)
            client = self._connect()
            self._record_checkout(time.monotonic() - start, reused=False)
            return client, False

    def _take_or_queue(self) -> _Idle | object | _Waiter:
        """Under the lock: an idle connection, SLOT to open one, or a _Waiter queued at the back.
        Nobody takes an idle connection past a queued caller (there is none while one waits:
        returns go to the queue first)."""
        if self._closed:
            raise PoolClosed("the connection pool is closed")
        self._expire_idle()
        if not self._waiting:
            if self._idle:
                return self._idle.pop()
            if self._open < self.max_size:
                self._open += 1
                return SLOT
        self.stats.waits += 1
        waiter = _Waiter()
        self._waiting.append(waiter)
        return waiter

    def _wait(self, waiter: _Waiter, deadline: float) -> _Idle | object:
        """Until something is handed to `waiter`, or PoolTimeout at `deadline`."""
        waiter.event.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if waiter.got is None:  # still queued: nothing came in time
                self._waiting.remove(waiter)
                self.stats.timeouts += 1
                raise PoolTimeout(f"all {self.max_size} connections to {self.host}:{self.port} "
                                  f"busy for {self.acquire_timeout:g} s")
        if waiter.got is CLOSED:
            raise PoolClosed("the connection pool is closed")
        return waiter.got

    def _hand(self, got) -> None:
        """Under the lock: give `got` (an _Idle, SLOT or CLOSED) to the longest waiter."""
        waiter = self._waiting.popleft()
        waiter.got = got
        self.stats.handoffs += got is not CLOSED
        waiter.event.set()

    def _needs_peek(self, entry: _Idle) -> bool:
        """Peek only at a connection idle longer than `peek_after` (or one its borrower closed)."""
        if time.monotonic() - entry.since < self.peek_after and entry.client.sock.fileno() != -1:
            return False
        with self._lock:
            self.stats.peeks += 1
        return True

    def _free_slot(self) -> None:
        """Under the lock: a connection is gone; its slot goes to the longest waiter, if any."""
        if self._waiting:
            self._hand(SLOT)
        else:
            self._open -= 1

    def _connect(self) -> EchoClient:
        """Open a connection in a slot already counted in `_open`; give the slot back on failure."""
        try:
            client = EchoClient(self.host, self.port, timeout=self.request_timeout)
        except BaseException:
            with self._lock:
                self._free_slot()
            raise
        with self._lock:
            self.stats.created += 1
        return client

    def _record_checkout(self, wait: float, reused: bool) -> None:
        with self._lock:
            self.stats.checkouts += 1
            self.stats.wait_times.append(wait)
            self.stats.reused += reused

    def _checkin(self, client: EchoClient) -> None:
        with self._lock:
            if not self._closed:
                entry = _Idle(client, time.monotonic())
                if self._waiting:
                    self._hand(entry)  # straight to the longest waiter: no barging
                else:
                    self._idle.append(entry)
                    self._expire_idle()
                return
            self._open -= 1
        client.close()

    def _discard(self, client: EchoClient, keep_slot: bool = False) -> None:
        """Close a dead or broken connection. Its slot goes to the longest waiter, or, with
        `keep_slot`, stays with the caller (for its retry or a new connection)."""
        client.close()
        with self._lock:
            self.stats.discarded += 1
            if not keep_slot:
                self._free_slot()

    def _expire_idle(self) -> None:
        """Under the lock: close idle connections older than idle_expiry (the oldest are at the
        bottom of the stack). Closing is quick for an idle socket: no data to flush."""
        cutoff = time.monotonic() - self.idle_expiry
        stale = 0
        while stale < len(self._idle) and self._idle[stale].since < cutoff:
            self._idle[stale].client.close()
            stale += 1
        if stale:
            del self._idle[:stale]
            self.stats.expired += stale
            for _ in range(stale):
                self._free_slot()
