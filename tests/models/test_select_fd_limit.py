"""select() cannot take a descriptor >= FD_SETSIZE (1024): such connections are refused, cleanly.

With ~1100 clients connected, the server's descriptors pass 1023. It must reset the extra
connections (counted, one warning for the whole burst), keep serving those it holds, and serve new
clients again once descriptors below 1024 are free: never a ValueError, a crash or a busy loop.
"""

from __future__ import annotations

import socket

import pytest

from tests import support

from tests.support import request

pytestmark = pytest.mark.timeout(180)

CLIENTS = 1100
WARNING = "does not fit"


def connect_quietly(server) -> socket.socket | None:
    """Connect; None if the server reset us before connect() even returned (a refusal)."""
    try:
        return server.connect(timeout=20)
    except ConnectionResetError:
        return None


def test_descriptors_past_fd_setsize_are_refused_and_the_server_lives_on(serve, tmp_path):
    support.raise_own_fd_limit(CLIENTS + 200)
    stats_file = str(tmp_path / "stats.json")
    server = serve("select", "--stats-file", stats_file, nofile=CLIENTS + 500)
    clients = []
    try:
        for _ in range(CLIENTS):
            clients.append(connect_quietly(server))
        assert support.wait_until(lambda: WARNING in server.stderr(), timeout=30), \
            "no warning about descriptors >= 1024"
        first = clients[0]
        assert request(first, b"still serving") == b"STILL SERVING"
        # A refused client sees its connection reset (or closed), and nothing else.
        assert support.is_closed_by_peer(clients[-1] or server.connect(timeout=20), timeout=20)
        assert server.proc.poll() is None
    finally:
        for sock in clients:
            if sock is not None:
                sock.close()
    # Descriptors below 1024 are free again: a new client is served.
    with server.connect() as fresh:
        assert request(fresh, b"served again") == b"SERVED AGAIN"
    assert server.stop() == 0
    log = server.stderr()
    assert log.count(WARNING) == 1, f"expected one warning for the burst, got:\n{log[-3000:]}"
    counters = support.read_stats_file(stats_file)
    assert counters["rejected_fd_too_high"] >= CLIENTS - 1024
    assert counters["internal_errors"] == 0
