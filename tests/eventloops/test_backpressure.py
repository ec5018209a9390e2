"""Back-pressure: clients that send a lot and never read cannot grow the server's memory.

Four clients with a tiny receive buffer each push 48 MiB and read nothing. The kernel can absorb
part of it (up to tcp_wmem's 4 MiB on the sending side and tcp_rmem's autotuned receive buffer,
32 MiB at most, on ours); a server that kept reading would also hold the rest as replies, over
100 MiB. Ours stops reading from a peer once --high-water bytes of output wait for it, so its
resident memory stays within a few MiB of what it was. Then the clients read, and every byte
comes back exact.
"""

from __future__ import annotations

import random
import threading

import pytest

from tests.eventloops.helpers import VARIANTS
from tests.support import recv_exactly, request

pytestmark = pytest.mark.timeout(180)

CLIENTS = 4
SIZE = 48 << 20  # more than the kernel can buffer for one connection (see above)
GROWTH_LIMIT = 24 << 20


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_clients_that_never_read_get_exact_data_with_bounded_memory(serve, model, flags):
    server = serve(model, *flags, "--high-water", "64K", "--low-water", "16K")
    payload = random.Random(4).randbytes(SIZE)
    expected = payload.upper()
    socks = [server.connect(rcvbuf=4096, timeout=60) for _ in range(CLIENTS)]
    try:
        for sock in socks:
            assert request(sock, b"warm up") == b"WARM UP"
        baseline = server.rss()
        outcomes: list[list] = [[] for _ in socks]

        def push(i):
            try:
                socks[i].sendall(payload)
                outcomes[i].append("sent")
            except OSError as exc:
                outcomes[i].append(exc)

        writers = [threading.Thread(target=push, args=(i,), daemon=True) for i in range(CLIENTS)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(2.0 / CLIENTS)  # about two seconds in all, nobody reading
        growth = server.rss() - baseline
        stalled = sum(writer.is_alive() for writer in writers)
        assert stalled == CLIENTS, \
            f"the server took all {SIZE} bytes from {CLIENTS - stalled} clients that read nothing"
        assert growth < GROWTH_LIMIT, f"server memory grew by {growth} bytes for clients that read nothing"

        exact = [False] * CLIENTS

        def read(i):
            exact[i] = recv_exactly(socks[i], SIZE) == expected

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(CLIENTS)]
        for reader in readers:
            reader.start()
        for thread in readers + writers:
            thread.join(120)
        assert outcomes == [["sent"]] * CLIENTS
        assert exact == [True] * CLIENTS
    finally:
        for sock in socks:
            sock.close()
