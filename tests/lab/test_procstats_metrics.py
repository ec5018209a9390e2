"""Server-side numbers the lab reads: process-tree figures, Prometheus metrics, the stats file."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

from iomodels import procstats
from iomodels.serving.metrics import serve_metrics
from iomodels.serving.stats import COUNTERS, Stats
from tests import support


def test_tree_sums_this_process_and_its_threads():
    figures = procstats.tree(os.getpid())
    assert figures.processes >= 1
    assert figures.threads >= 1
    assert figures.rss_bytes > 0 and figures.pss_bytes > 0
    assert figures.cpu_s > 0
    assert figures.ctx_switches >= 0
    assert set(figures.to_dict()) >= {"cpu_user_s", "rss_bytes", "threads", "processes", "ctx_switches"}


def test_window_measures_cpu_over_a_stretch():
    with procstats.Window(os.getpid()) as window:
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            pass
    assert window.seconds > 0
    assert window.cpu_percent >= 0


def test_own_usage_has_cpu_and_context_switches():
    usage = procstats.own_usage()
    assert {"cpu_user_s", "cpu_system_s", "ctx_voluntary", "ctx_involuntary", "max_rss_bytes"} <= set(usage)


def test_metrics_are_prometheus_text_with_every_counter():
    stats = Stats()
    stats.recv_calls = 7
    stats.connections_open = 2
    httpd, thread = serve_metrics("127.0.0.1", 0, stats)
    try:
        port = httpd.server_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        httpd.shutdown()
        httpd.server_close()
    for name in COUNTERS:
        assert f"iomodels_{name}_total" in text
    assert "iomodels_recv_calls_total 7.0" in text
    assert "iomodels_connections_open 2.0" in text
    assert 'iomodels_process_cpu_seconds_total{mode="user"}' in text
    assert "iomodels_process_threads" in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_exposes_metrics_and_rewrites_stats_on_sigusr1(serve, tmp_path):
    stats_file = tmp_path / "stats.json"
    metrics_port = _free_port()
    server = serve("threaded", "--metrics-port", str(metrics_port), "--stats-file", str(stats_file))
    with server.connect() as sock:
        assert support.request(sock, b"abc") == b"ABC"
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert support.wait_until(lambda: b"iomodels_accepts_total 1.0" in urllib.request.urlopen(url, timeout=5).read())
    os.kill(server.pid, signal.SIGUSR1)
    assert support.wait_until(stats_file.exists)
    snapshot = json.loads(stats_file.read_text())
    assert snapshot["model"] == "threaded" and snapshot["accepts"] == 1
    assert snapshot["cpu_user_s"] >= 0 and snapshot["ctx_voluntary"] >= 0
