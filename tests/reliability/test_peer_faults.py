"""Scenarios 7, 8 and 9: peers that reset, that vanish under a write, that stop sending early.

A reset (SO_LINGER(1, 0) then close: RST instead of FIN) while the server has output pending is
the peer error servers meet most: the next send fails with ECONNRESET, and one more with EPIPE,
which raises SIGPIPE in a process that has not ignored it. None of it is the server's bug: no
traceback, no log line above DEBUG, the descriptor freed, every other session unaffected.
"""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from tests import support
from tests.reliability.helpers import (
    concurrent, fill_until_stalled, per_model, read_stats, reset, settled_fds, sigpipe_ignored, total_fds)

VICTIMS = 5


def _reset_victims(server, count: int) -> None:
    """Clients that push until the server is stuck with output for them, then reset."""
    for _ in range(count):
        victim = server.connect(rcvbuf=4096)
        fill_until_stalled(victim)
        reset(victim)


@pytest.mark.scenario(7)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model())
def test_peer_reset_mid_write(serve, model, record_property):
    """Scenario 7. Clients reset (SO_LINGER(1,0) + close) while the server has pending output.
    Pass: nothing logged at INFO or above but the ready line and the stop, the descriptors are
    freed (bounded wait), another open session and a new client are served as before."""
    server = serve(model, "--high-water", "64K", "--low-water", "16K")
    other = server.connect() if concurrent(model) else None
    with server.connect() as warm:
        assert support.request(warm, b"warm up") == b"WARM UP"
    if other is not None:
        assert support.request(other, b"before") == b"BEFORE"
    baseline = settled_fds(server)
    _reset_victims(server, VICTIMS)
    reset_at = time.monotonic()
    assert support.wait_until(lambda: total_fds(server) <= baseline, timeout=10), \
        f"{model}: {total_fds(server)} descriptors open, {baseline} before the resets"
    record_property("fd_freed_after_s", round(time.monotonic() - reset_at, 2))
    if other is not None:
        assert support.request(other, b"still here") == b"STILL HERE"
        other.close()
    with server.connect() as fresh:
        assert support.request(fresh, b"after") == b"AFTER"
    logged = [line for line in server.stderr().splitlines()
              if any(f" {level} " in line for level in ("INFO", "WARNING", "ERROR", "CRITICAL"))]
    assert not logged and "Traceback" not in server.stderr(), server.stderr()[-3000:]


SIGPIPE_MODELS = ["forking", "io_uring"]


@pytest.mark.scenario(8)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model(
    only=SIGPIPE_MODELS, only_reason="runs in the Python process that started it, which ignores "
    "SIGPIPE from startup (scenario 7 covers its resets); forking's children and io_uring's "
    "kernel-side sends are where that guarantee needs checking"))
def test_no_process_dies_of_sigpipe(serve, model, tmp_path):
    """Scenario 8. Scenario 7's resets, 20 of them, against forking and io_uring.
    Pass: the server and each child ignore SIGPIPE (SigIgn in /proc), the server stays up and
    serving, and every connection is accounted for in its counters (a child killed by a signal
    would never report its own)."""
    stats_file = tmp_path / "stats.json"
    server = serve(model, "--high-water", "64K", "--low-water", "16K", "--stats-file", str(stats_file))
    victims = 20
    with server.connect() as sock:
        assert support.request(sock, b"hello") == b"HELLO"
        for child in server.descendants():
            assert sigpipe_ignored(child.pid), f"child {child.pid} would die of SIGPIPE"
    assert sigpipe_ignored(server.pid)
    _reset_victims(server, victims)
    assert support.wait_until(lambda: not server.descendants(), timeout=15)
    assert server.proc.poll() is None
    with server.connect() as sock:
        assert support.request(sock, b"alive") == b"ALIVE"
    assert server.stop() == 0
    stats = read_stats(stats_file)
    assert stats["connections_closed"] == victims + 2, stats


HALF_CLOSE_CASES = {
    # what the client sends before shutdown(SHUT_WR), and whether it reads only after that
    "nothing": (b"", False),
    "one request": (b"one request", False),
    "many small writes": (b"".join(random.Random(1).randbytes(n) for n in range(1, 400)), False),
    "4 MiB unread until after the half-close": (random.Random(2).randbytes(4 << 20), True),
}


@pytest.mark.scenario(9)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model())
def test_half_close_all_output_then_eof(serve, model):
    """Scenario 9. The client sends, then shutdown(SHUT_WR). Pass: every reply byte arrives, then
    EOF: with no input, after small writes, and after 4 MiB that the client reads only once it
    half-closed (the server is paused by back-pressure when the EOF arrives)."""
    server = serve(model, "--high-water", "64K", "--low-water", "16K")
    for name, (data, read_after) in HALF_CLOSE_CASES.items():
        with server.connect(timeout=60) as sock:
            if read_after:
                sender = threading.Thread(target=lambda: (sock.sendall(data), sock.shutdown(socket.SHUT_WR)))
                sender.start()
                sender.join(2)  # it stalls: nobody reads the replies yet
                received = support.recv_until_eof(sock)
                sender.join(30)
            else:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                received = support.recv_until_eof(sock)
            assert received == data.upper(), f"{model}, {name}: {len(received)} of {len(data)} bytes"
