"""The load generator against real servers: ours, and faulty ones written for the purpose.

No assertion here is about speed: only counts, verification verdicts, and that a stall the server
really made shows up in the latencies (a lower bound, which a loaded machine only makes larger).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from iomodels import bench
from tests import support
from tests.faulty import FaultyServer, no_uppercase, one_byte_too_many, unicode_uppercase

SHORT = {"duration": 0.6, "warmup": 0.2}
JSON_FIELDS = {"requests", "requests_per_s", "bytes_per_s", "latency_us", "errors", "mismatches", "connections",
               "idle", "size", "pipeline", "rate", "duration_s", "client_cpu", "server_cpu",
               "server_rss_bytes", "server_cpu_per_request_us"}
MODELS = [name for name in ("threaded", "epoll", "uvloop", "io_uring") if name in support.ALL_MODELS]


def bench_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iomodels", "bench", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("model", MODELS)
def test_our_servers_pass_verification(serve, model):
    server = serve(model)
    result = bench.run(server.host, server.port, connections=8, size="1-3000", pipeline=4, **SHORT)
    assert result.ok, result.warnings
    assert result.requests > 0 and result.mismatches == 0 and result.errors == 0


def test_json_has_every_field_and_server_figures(serve):
    server = serve("threaded")
    done = bench_cli(f"{server.host}:{server.port}", "-c", "4", "--duration", "600ms", "-w", "0.2", "--json",
                     "--server-pid", str(server.pid))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert JSON_FIELDS <= set(report)
    assert set(report["latency_us"]) == {"p50", "p90", "p99", "p999", "max", "mean"}
    assert report["requests"] > 0 and report["server_cpu"] > 0 and report["server_rss_bytes"] > 0
    assert report["server_cpu_per_request_us"] > 0 and report["client_cpu"] > 0
    assert report["connections"] == 4 and report["size"] == 64 and report["rate"] is None


@pytest.mark.parametrize("reply, what", [(no_uppercase, "mismatches"), (unicode_uppercase, "mismatches"),
                                         (one_byte_too_many, "protocol_errors")])
def test_a_corrupting_server_is_caught(reply, what):
    with FaultyServer(reply) as server:
        result = bench.run("127.0.0.1", server.port, connections=3, **SHORT)
    assert getattr(result, what) > 0
    assert not result.ok


def test_mismatches_make_the_exit_status_1():
    with FaultyServer(unicode_uppercase) as server:
        done = bench_cli(f"127.0.0.1:{server.port}", "-c", "2", "--duration", "0.5s", "-w", "0.1", "--json")
    assert done.returncode == 1 and done.stdout, done.stderr
    assert json.loads(done.stdout)["mismatches"] > 0


def test_open_loop_shows_a_server_stall_in_the_tail():
    # 400 requests/s; after ~1 s of traffic the server stops answering for 0.5 s. Requests meant to
    # leave during the stall are timed from their intended send time, so the tail must show it.
    stall = 0.5
    with FaultyServer(stall_after_bytes=400 * 64, stall_for=stall) as server:
        result = bench.run("127.0.0.1", server.port, connections=4, rate=400, duration=2.0, warmup=0.3)
    assert result.ok, result.warnings
    assert result.latency_us["max"] >= 0.8 * stall * 1e6
    assert result.latency_us["p99"] >= 0.5 * stall * 1e6
    assert result.send_lag_us is not None


def test_idle_connections_reach_the_server(serve):
    server = serve("epoll")
    before = server.num_fds()
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=bench.run(
        server.host, server.port, connections=2, idle=2000, duration=2.0, warmup=0.2)))
    runner.start()
    try:
        assert support.wait_until(lambda: server.num_fds() >= before + 2000, timeout=60)
    finally:
        runner.join(120)
    result = box["result"]
    assert result.ok, result.warnings
    assert result.idle == 2000 and result.idle_lost == 0 and result.connect_errors == 0


@pytest.mark.parametrize("pipeline", [2, 32])
def test_workers_merge_counts_exactly(pipeline):
    # The server counts every reply byte it sent; what the workers counted, merged, must account
    # for all of them but the requests still in flight when the run ended.
    connections = 6
    with FaultyServer() as server:
        result = bench.run("127.0.0.1", server.port, connections=connections, pipeline=pipeline, workers=3,
                           **SHORT)
        replies = server.sent // 64
    assert result.ok, result.warnings
    assert result.workers == 3 and len(result.worker_cpu) == len(result.worker_system_cpu) == 3
    assert all(0 <= kernel <= busy + 0.01 for kernel, busy in zip(result.worker_system_cpu, result.worker_cpu))
    counted = result.requests + result.warmup_requests
    assert counted <= replies <= counted + connections * pipeline


def test_connect_per_request_opens_a_connection_each_time():
    with FaultyServer() as server:
        result = bench.run("127.0.0.1", server.port, connections=2, connect_per_request=True, **SHORT)
        accepted = len(server.connections)
    assert result.ok, result.warnings
    assert result.connect_per_request and result.requests > 0
    assert accepted >= result.requests + result.warmup_requests


@pytest.mark.parametrize("args, fragment, status", [
    (("10.0.0.1:80",), "only loads the local machine", 2),
    (("127.0.0.1:notaport",), "expected HOST:PORT", 2),
    (("127.0.0.1:9", "--size", "100-10"), "--size", 2),
    (("127.0.0.1:9", "--workers", "many"), "--workers", 2),
    (("127.0.0.1:9", "--duration", "99999"), "--duration", 2),
    (("127.0.0.1:1", "--duration", "0.2"), "connection refused", 1),
])
def test_user_errors_are_one_line(args, fragment, status):
    done = bench_cli(*args)
    assert done.returncode == status
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
