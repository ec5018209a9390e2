"""`--workers N`: processes sharing the port with SO_REUSEPORT, supervised by the parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests import support
from tests.support import request


def test_workers_serve_restart_and_merge_counters(serve, tmp_path):
    stats_file = tmp_path / "stats.json"
    server = serve("epoll", "--workers", "2", "--stats-file", str(stats_file))
    assert support.wait_until(lambda: len(server.descendants()) == 2)
    for i in range(20):
        with server.connect() as sock:
            assert request(sock, b"worker %d" % i) == b"WORKER %d" % i

    victim = server.descendants()[0].pid
    os.kill(victim, signal.SIGKILL)  # a worker dies: the parent starts a new one
    assert support.wait_until(lambda: len(server.descendants()) == 2 and
                              victim not in [p.pid for p in server.descendants()])
    for i in range(10):
        with server.connect() as sock:
            assert request(sock, b"after") == b"AFTER"

    assert server.stop() == 0
    counters = json.loads(stats_file.read_text())
    # The killed worker's last published counts may miss its final half second: at least most.
    assert 10 <= counters["accepts"] <= 30
    assert counters["connections_open"] == 0
    assert "died; starting a new one" in server.stderr()


def test_workers_need_an_event_driven_model():
    result = subprocess.run([sys.executable, "-m", "iomodels", "serve", "--model", "threaded", "--workers", "2",
                             "--port", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "runs as a single process" in result.stderr and len(result.stderr.splitlines()) == 1
