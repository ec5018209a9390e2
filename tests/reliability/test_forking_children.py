"""Scenario 17: the forking server's bookkeeping of its children cannot race its own reaper.

The SIGCHLD handler used to be able to reap a child before the parent had added its PID to the
set of children: the PID then stayed there forever, `connections_open` went negative, and at
SIGTERM the server signalled PIDs that the kernel may since have given to unrelated processes.
"""

from __future__ import annotations

import signal

import pytest

from tests.reliability.helpers import per_model, read_stats, run_all

CLIENTS, PER_CLIENT = 4, 250


@pytest.mark.scenario(17)
@pytest.mark.timeout(180)
@pytest.mark.parametrize("model", per_model(only=["forking"], only_reason="no child process per connection"))
def test_many_short_connections_leave_no_stale_children(serve, model, tmp_path):
    """1000 connections that each exchange one request and close at once (children exit as fast
    as they are forked), then SIGTERM. Pass: every child was counted out: `connections_open`
    ends at 0 and the server exits 0 (the fixture checks no process is left behind)."""
    stats_file = tmp_path / "stats.json"
    server = serve(model, "--stats-file", str(stats_file))

    def client():
        for _ in range(PER_CLIENT):
            with server.connect(timeout=30) as sock:
                sock.sendall(b"x")
                if sock.recv(1) != b"X":
                    return "wrong reply"
        return "ok"

    assert run_all([client] * CLIENTS, concurrently=True) == ["ok"] * CLIENTS
    assert server.stop(signal.SIGTERM) == 0
    stats = read_stats(stats_file)
    assert stats["processes_started"] == CLIENTS * PER_CLIENT
    assert stats["connections_open"] == 0, stats
