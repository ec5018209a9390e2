"""What the reliability scenarios share: which models a scenario applies to, faulty peers, counters.

`per_model(exclude)` is how a scenario states its exclusions: every model appears in the
parametrisation, and an excluded one is skipped with "not applicable: <why>", which is what the
RELIABILITY.md matrix shows in its cell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import selectors
import socket
import struct
import threading
import time

import pytest

from tests import support
from tests.support import read_stats_file as read_stats  # noqa: F401  (the scenarios' name)
from tests.support import ALL_MODELS, CONCURRENT_MODELS

ONE_AT_A_TIME = "the iterative blocking server serves one client at a time, by its nature"
# Models that wait for readiness or completion of many sockets in one thread ("event-driven": the
# ones that can also share a port between worker processes); the others block a thread or process
# per connection, or spin.
EVENT_DRIVEN = support.models_where(multi_worker=True)
LINGER_ZERO = struct.pack("ii", 1, 0)


def per_model(exclude: dict[str, str] | None = None, only: list[str] | None = None,
              only_reason: str = "", not_concurrent: str | None = None) -> list:
    """Every registered model as a parameter; those in `exclude` (or not in `only`, or, with
    `not_concurrent`, those that serve one client at a time) skipped as not applicable, with the reason."""
    exclude = dict(exclude or {})
    if not_concurrent is not None:
        exclude.update({name: f"{ONE_AT_A_TIME}{not_concurrent}" for name in ALL_MODELS if not concurrent(name)})
    if only is not None:
        exclude.update({name: only_reason for name in ALL_MODELS if name not in only})
    return [pytest.param(name, marks=pytest.mark.skip(reason=f"not applicable: {exclude[name]}"))
            if name in exclude else name for name in ALL_MODELS]


def concurrent(model: str) -> bool:
    return model in CONCURRENT_MODELS


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER(1, 0): the kernel sends RST instead of FIN and discards unsent data."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()


def fill_until_stalled(sock: socket.socket, limit: int = 16 << 20, quiet: float = 0.2) -> int:
    """Send without reading until the server stops taking bytes for `quiet` s (it has output it
    cannot deliver, and back-pressure stopped its reading), or `limit` bytes went. Returns bytes sent."""
    sock.setblocking(False)
    chunk = b"stall " * 10_000
    sent, last_progress = 0, time.monotonic()
    try:
        while sent < limit and time.monotonic() - last_progress < quiet:
            try:
                sent += sock.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        sock.setblocking(True)
    return sent


def total_fds(server: support.RunningServer) -> int:
    """Descriptors of the server and its children (the forking model serves in children)."""
    total = 0
    for proc in [server.process, *server.descendants()]:
        with contextlib.suppress(Exception):
            total += proc.num_fds()
    return total


def settled_fds(server: support.RunningServer, timeout: float = 10.0) -> int:
    """The descriptor count once it stopped changing (closed connections released, children gone):
    the baseline for a leak check, taken after a warm-up so one-time allocations are in it."""
    def sample():
        return total_fds(server), len(server.descendants())

    samples = [sample()]

    def steady():  # three equal samples over 0.4 s: a server descheduled for a moment is not "settled"
        time.sleep(0.2)
        samples.append(sample())
        return len(samples) >= 3 and samples[-1] == samples[-2] == samples[-3]

    support.wait_until(steady, timeout=timeout, interval=0)
    return samples[-1][0]


def serves(server: support.RunningServer, message: bytes = b"still serving", timeout: float = 5.0) -> bool:
    """One fresh client gets its reply (for wait_until: False rather than an exception)."""
    try:
        with server.connect(timeout=timeout) as sock:
            return support.request(sock, message) == message.upper()
    except (OSError, AssertionError):
        return False


def sigpipe_ignored(pid: int) -> bool:
    """Is SIGPIPE in the process's ignored-signal mask (/proc/PID/status, SigIgn)?"""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (13 - 1)))
    return False


class HashingReader(threading.Thread):
    """Reads a socket until EOF (or a reset), hashing what came, in its own thread."""

    def __init__(self, sock: socket.socket, limit: int | None = None):
        super().__init__(daemon=True)
        self.sock = sock
        self.limit = limit  # stop after this many bytes instead of waiting for EOF
        self.sha = hashlib.sha256()
        self.count = 0
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        try:
            while self.limit is None or self.count < self.limit:
                want = len(buf) if self.limit is None else min(len(buf), self.limit - self.count)
                n = self.sock.recv_into(view, want)
                if not n:
                    return
                self.sha.update(view[:n])
                self.count += n
        except OSError as exc:
            self.error = exc

    def result(self, timeout: float) -> tuple[int, str]:
        self.join(timeout)
        assert not self.is_alive(), f"reader still waiting after {timeout}s ({self.count} bytes so far)"
        return self.count, self.sha.hexdigest()


def run_all(jobs, concurrently: bool, timeout: float = 120.0) -> list:
    """Run the callables at once in threads (or one after another), returning their results;
    an exception counts as a result, so one failure does not hide the others."""
    results: list = [None] * len(jobs)

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertion
            results[i] = exc

    if not concurrently:
        for i, job in enumerate(jobs):
            run(i, job)
        return results
    threads = [threading.Thread(target=run, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return results


def request_many(address, count: int, message: bytes = b"ping", timeout: float = 60.0) -> int:
    """`count` clients connected at once, each sending `message`; each closes once answered.
    Driven by one selector, so a pool or iterative server serves them in turn without deadlock.
    Returns how many got the exact reply."""
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for _ in range(count):
            sock = support.connect(address, timeout=timeout)
            sock.setblocking(False)
            socks.append(sock)
        for sock in socks:
            sock.sendall(message)  # small: fits the send buffer, never blocks
            sel.register(sock, selectors.EVENT_READ, bytearray())
        answered, deadline = 0, time.monotonic() + timeout
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                key.data.extend(chunk)
                if not chunk or len(key.data) >= len(message):
                    answered += key.data == message.upper()
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
        return answered
    finally:
        for sock in socks:
            sock.close()
        sel.close()
