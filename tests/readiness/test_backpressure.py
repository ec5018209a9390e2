"""Back-pressure: 20 clients each push 32 MiB and read nothing; the server must not buffer it.

Each connection's unsent replies stop its reading at the high-water mark, so the server holds at
most about `--high-water` + one `recv` per connection (~6 MiB for 20), not the 640 MiB pushed.
Peak resident memory (VmHWM, which also catches short peaks) must stay far below the pushed total;
then the clients read, and every byte must come back uppercased, in order.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time

import pytest

from tests.readiness.helpers import READINESS_MODELS, peak_rss
from tests.support import request

pytestmark = pytest.mark.timeout(300)

CLIENTS = 20
SIZE = 32 << 20
CHUNK = 1 << 20
# Pushed: 640 MiB. Allowed growth: a tenth of it, ten times what the water marks need.
MAX_GROWTH = 64 << 20

# Mostly lowercase letters, so the reply differs from the request; any byte value may occur.
BLOCK = random.Random(32).randbytes(CHUNK).lower()
EXPECTED_DIGEST = hashlib.sha256(BLOCK.upper() * (SIZE // CHUNK)).hexdigest()


class Pusher:
    """Sends 32 MiB on one connection from a thread, counting what the kernel took."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._push, daemon=True)
        self.thread.start()

    def _push(self):
        try:
            for _ in range(SIZE // CHUNK):
                self.sock.sendall(BLOCK)
                self.sent += CHUNK
        except BaseException as exc:
            self.error = exc


def read_and_digest(sock, results, index):
    digest = hashlib.sha256()
    remaining = SIZE
    try:
        while remaining:
            chunk = sock.recv(min(remaining, 1 << 18))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        results[index] = (SIZE - remaining, digest.hexdigest())
    except OSError as exc:
        results[index] = (SIZE - remaining, repr(exc))


def wait_until_stalled(pushers, quiet: float = 0.5, timeout: float = 60.0) -> None:
    """Until no pusher made progress for `quiet` seconds (the server stopped reading them all)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        total = sum(p.sent for p in pushers)
        if total == last:
            return
        last = total
        time.sleep(quiet)


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_clients_that_do_not_read_cannot_grow_server_memory(serve, model):
    server = serve(model)
    socks = [server.connect(timeout=120) for _ in range(CLIENTS)]
    try:
        for sock in socks:
            assert request(sock, b"warm up") == b"WARM UP"
        baseline = peak_rss(server.pid)
        pushers = [Pusher(sock) for sock in socks]
        wait_until_stalled(pushers)
        growth = peak_rss(server.pid) - baseline
        assert all(p.sent < SIZE for p in pushers), "the server took all 32 MiB from a client not reading"
        assert growth < MAX_GROWTH, f"server peak memory grew by {growth >> 20} MiB while not being read"

        results: dict[int, tuple] = {}
        readers = [threading.Thread(target=read_and_digest, args=(sock, results, i), daemon=True)
                   for i, sock in enumerate(socks)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(240)
        for pusher in pushers:
            pusher.thread.join(10)
        assert [p.error for p in pushers] == [None] * CLIENTS
        assert results == {i: (SIZE, EXPECTED_DIGEST) for i in range(CLIENTS)}
        growth = peak_rss(server.pid) - baseline
        assert growth < MAX_GROWTH, f"server peak memory grew by {growth >> 20} MiB while flowing"
    finally:
        for sock in socks:
            sock.close()
