"""Plain-socket clients for the experiments that need a handful of precise peers, not a load.

Idle clients, a client that asks once and waits a bounded time for its reply, and `ping_all`,
which sends one request on many sockets at once and counts who got an answer (a selector, so a
thousand sockets cost one thread). Load (many requests, latency percentiles) is the bench's job.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time

from iomodels.addresses import SourceAddresses, bind_source
from iomodels.linger import reset_on_close

# The widest plan: every lab crowd fits it, and spreading starts where one source address runs short.
SOURCES = SourceAddresses.widest("127.0.0.1")


def connect(address: tuple[str, int], timeout: float = 5.0, index: int = 0) -> socket.socket:
    """Connect the `index`-th client of a crowd from the source address the shared policy gives it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bind_source(sock, SOURCES.address(index))
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def ask(sock: socket.socket, data: bytes, timeout: float) -> float | None:
    """Send `data`, wait up to `timeout` s for its uppercase echo; seconds taken, or None if none came."""
    started = time.monotonic()
    sock.settimeout(timeout)
    sock.sendall(data)
    return wait_reply(sock, data, timeout, started)


def wait_reply(sock: socket.socket, data: bytes, timeout: float, started: float | None = None) -> float | None:
    """Wait for the rest of the echo of `data`; seconds since `started`, or None on timeout/close."""
    started = time.monotonic() if started is None else started
    got = b""
    deadline = started + timeout
    while len(got) < len(data):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(len(data) - len(got))
        except TimeoutError:
            return None
        if not chunk:
            return None
        got += chunk
    if got != data.upper():
        raise AssertionError(f"wrong reply {got!r} to {data!r}")
    return time.monotonic() - started


class Crowd:
    """`count` connections held open (and, with `ping`, each answered once). Closed on exit.

    `opened` is how many connected; `error` says why the next one could not (refused, reset,
    timeout, out of descriptors, or `deadline` s passed: a full accept queue makes connect() wait
    for the server), so an experiment can report "fails at N: why".
    """

    def __init__(self, address: tuple[str, int], count: int, connect_timeout: float = 5.0,
                 deadline: float | None = None):
        self.socks: list[socket.socket] = []
        self.error = ""
        started = time.monotonic()
        for index in range(count):
            if deadline is not None and time.monotonic() - started > deadline:
                self.error = f"only {index:,} connections completed in {deadline:g} s (the server accepts slowly)"
                break
            try:
                self.socks.append(connect(address, connect_timeout, index))
            except OSError as exc:
                self.error = f"connection {index + 1}: {exc.strerror or str(exc) or 'timed out'}"
                break

    @property
    def opened(self) -> int:
        return len(self.socks)

    def ping_all(self, timeout: float, data: bytes = b"ping", quiet: float = 1.0) -> int:
        return ping_all(self.socks, timeout, data, quiet)

    def close(self) -> None:
        """Close with a reset (SO_LINGER 0): a FIN from our side would leave each port in TIME_WAIT
        for a minute, and with tens of thousands of those the kernel's search for a free port
        makes the next crowd's connects slow: the lab would measure its own leftovers."""
        for sock in self.socks:
            reset_on_close(sock)
            sock.close()
        self.socks.clear()

    def __enter__(self) -> "Crowd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ping_all(socks: list[socket.socket], timeout: float, data: bytes = b"ping", quiet: float = 1.0) -> int:
    """Send `data` on every socket; return how many got their echo. Gives up after `timeout` s, or
    once no reply came for `quiet` s (a full pool answers nobody else, however long we wait)."""
    expected = data.upper()
    pending: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            try:
                sock.sendall(data)
            except OSError:
                continue
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            pending[sock] = b""
        answered = 0
        deadline = time.monotonic() + timeout
        last_reply = time.monotonic()
        while pending and (left := min(deadline, last_reply + quiet) - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                last_reply = time.monotonic()
                sock = key.fileobj
                try:
                    chunk = sock.recv(len(expected))
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                pending[sock] += chunk
                if not chunk or len(pending[sock]) >= len(expected):
                    answered += pending.pop(sock) == expected
                    selector.unregister(sock)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.setblocking(True)
    return answered
