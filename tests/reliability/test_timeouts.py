"""Scenarios 5 and 6: connections that say nothing, and connections that say almost nothing.

A silent connection must be closed at `--idle-timeout`, giving back its descriptor. A slowloris
peer defeats an idle timeout by sending one byte just before it expires; `--max-connection-age`
bounds how long any connection may live, so such peers cannot hold the server's slots forever.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

import pytest

from tests import support
from tests.reliability.helpers import concurrent, per_model, read_stats, settled_fds, total_fds

IDLE = 1.0


def _wait_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, float]:
    """Wait until the server closed each socket (EOF or reset); return when each one was."""
    closed: dict[socket.socket, float] = {}
    deadline = time.monotonic() + timeout
    while len(closed) < len(socks) and time.monotonic() < deadline:
        waiting = [s for s in socks if s not in closed]
        readable, _, _ = select.select(waiting, [], [], 0.1)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed[sock] = time.monotonic()
    return closed


@pytest.mark.scenario(5)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("model", per_model())
def test_idle_connections_are_closed_at_the_timeout(serve, model, record_property):
    """Scenario 5. Connections silent after one request, `--idle-timeout 1`.
    Pass: none is closed before 0.9 s of silence, all are closed (bounded wait), and the server's
    descriptor count returns to its baseline. (The iterative blocking server holds one at a time.)"""
    server = serve(model, "--idle-timeout", str(IDLE), *(("--threads", "8") if model == "threadpool" else ()))
    with server.connect() as sock:
        assert support.request(sock, b"warm up") == b"WARM UP"
    baseline = settled_fds(server)
    socks, last_sent = [], {}
    for _ in range(5 if concurrent(model) else 1):
        sock = server.connect()
        last_sent[sock] = time.monotonic()  # before the request: the server's silence starts later
        assert support.request(sock, b"then nothing") == b"THEN NOTHING"
        socks.append(sock)
    try:
        closed = _wait_closed(socks, timeout=IDLE * 10)
        assert len(closed) == len(socks), f"{model}: {len(socks) - len(closed)} idle connections still open"
        silences = [closed[s] - last_sent[s] for s in socks]
        record_property("closed_after_s", f"{min(silences):.2f}-{max(silences):.2f}")
        # The issue's +/-10 %: measured here, not asserted (a loaded machine only makes it later).
        record_property("latest_pct_over_timeout", round(100 * (max(silences) - IDLE) / IDLE))
        assert min(silences) >= 0.9 * IDLE, f"{model}: closed after {min(silences):.2f}s of silence"
        assert support.wait_until(lambda: total_fds(server) <= baseline, timeout=10), \
            f"{model}: {total_fds(server)} descriptors open, {baseline} before"
    finally:
        for sock in socks:
            sock.close()


class Drip(threading.Thread):
    """Slowloris: one byte every `interval` on each socket, until the server closes it."""

    def __init__(self, socks: list[socket.socket], interval: float, stop_after: float):
        super().__init__(daemon=True)
        self.socks, self.interval, self.stop_after = socks, interval, stop_after
        self.opened = time.monotonic()
        self.closed_at: dict[socket.socket, float] = {}
        self.start()

    def run(self) -> None:
        for sock in self.socks:
            sock.setblocking(False)
        while len(self.closed_at) < len(self.socks) and time.monotonic() - self.opened < self.stop_after:
            for sock in self.socks:
                if sock in self.closed_at:
                    continue
                try:
                    with contextlib.suppress(BlockingIOError):
                        while sock.recv(4096):  # the echoes of our drips
                            pass
                        raise ConnectionResetError  # recv returned b"": the server closed it
                    sock.send(b"x")
                except OSError:
                    self.closed_at[sock] = time.monotonic()
            time.sleep(self.interval)


@pytest.mark.scenario(6)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model(not_concurrent=""))
def test_slow_drip_is_limited_by_max_connection_age(serve, model, tmp_path, record_property):
    """Scenario 6. `--max-connections 10 --idle-timeout 1 --max-connection-age 3`; 9 clients each
    send one byte every 0.3 s. Pass: every dripping connection is closed by its age (counted in
    aged_closed, none as idle), and a normal client is served meanwhile (the thread pool serves it
    once the age frees a thread)."""
    stats_file = tmp_path / "stats.json"
    server = serve(model, "--max-connections", "10", "--idle-timeout", str(IDLE), "--max-connection-age", "3",
                   "--stats-file", str(stats_file))
    slow = [server.connect() for _ in range(9)]
    drip = Drip(slow, interval=0.3, stop_after=60)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        with server.connect(timeout=30) as normal:
            assert support.request(normal, b"normal client") == b"NORMAL CLIENT"
        record_property("normal_client_served_after_s", round(time.monotonic() - started, 2))
        drip.join(60)
        assert len(drip.closed_at) == len(slow), f"{model}: {len(slow) - len(drip.closed_at)} slow clients still open"
        lifetimes = [drip.closed_at[s] - drip.opened for s in slow]
        record_property("slow_clients_closed_after_s", f"{min(lifetimes):.1f}-{max(lifetimes):.1f}")
    finally:
        for sock in slow:
            sock.close()
    assert server.stop() == 0
    stats = read_stats(stats_file)
    assert stats["aged_closed"] >= len(slow) and stats["idle_closed"] == 0, stats
