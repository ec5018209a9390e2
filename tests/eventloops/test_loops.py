"""Behaviour shared by the event loops and io_uring: limits, shutdown, failures, counters."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests import support
from tests.eventloops.helpers import VARIANTS, patched_env, read_final_counters
from tests.support import request

pytestmark = pytest.mark.timeout(120)

# EchoSession raises on this input: a bug inside a callback, in one connection only.
BOOM = support.core_bug(b"BOOM", "injected failure")


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_a_bug_in_a_callback_aborts_only_that_connection(serve, model, flags, tmp_path):
    server = serve(model, *flags, env=patched_env(tmp_path, BOOM))
    server.allow_traceback = True
    with server.connect() as bystander, server.connect() as victim:
        assert request(bystander, b"before") == b"BEFORE"
        victim.sendall(b"BOOM")
        assert support.is_closed_by_peer(victim)
        assert request(bystander, b"after") == b"AFTER"
    assert support.wait_until(lambda: "injected failure" in server.stderr())
    log = server.stderr()
    assert log.count("Traceback") == 1 and log.count("internal error") == 1, log


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_sigterm_drains_open_connections_and_refuses_new_ones(serve, model, flags):
    server = serve(model, *flags, "--drain-timeout", "30")
    sock = server.connect()
    assert request(sock, b"before") == b"BEFORE"
    server.proc.send_signal(15)
    assert support.wait_until(lambda: "stopping" in server.stderr())
    with pytest.raises(ConnectionRefusedError):
        server.connect(timeout=2)
    assert request(sock, b"during the drain") == b"DURING THE DRAIN"
    sock.close()
    # The last connection gone, the server exits long before the 30 s drain timeout.
    server.proc.wait(15)
    assert server.proc.returncode == 0


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_idle_connections_close_while_busy_ones_stay(serve, model, flags):
    server = serve(model, *flags, "--idle-timeout", "1")
    with server.connect() as idle, server.connect() as busy:
        assert request(idle, b"once") == b"ONCE"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # a request every 0.2 s, well inside the timeout
            assert request(busy, b"tick") == b"TICK"
            time.sleep(0.2)
        assert support.is_closed_by_peer(idle, timeout=10)
        assert request(busy, b"still open") == b"STILL OPEN"


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_counters_show_the_loop_at_work(serve, model, flags, tmp_path):
    stats_file = str(tmp_path / "stats.json")
    server = serve(model, *flags, "--stats-file", stats_file)
    requests = 100
    with server.connect() as sock:
        for _ in range(requests):
            request(sock, b"count me")
    assert server.stop() == 0
    counters = read_final_counters(stats_file)
    assert counters["bytes_in"] == counters["bytes_out"] == requests * len(b"count me")
    assert counters["loop_iterations"] >= requests
    assert counters["events"] >= requests
    if model == "io_uring":  # a receive completes per request (a send only if it fails), in batches
        assert counters["completions"] >= requests
        assert 0 < counters["submits"] <= counters["completions"]
    else:
        assert counters["submits"] == counters["completions"] == 0
    print(model, flags, json.dumps({k: counters[k] for k in (
        "loop_iterations", "wait_calls", "events", "submits", "completions")}))


@pytest.mark.parametrize("model, flags", [
    pytest.param(*variant.values, id=variant.id, marks=pytest.mark.skip(
        reason="not applicable: uvloop reads into libuv's own 256 KiB buffer, which --recv-size cannot "
        "bound (models/_eventloop.py)")) if variant.id == "uvloop" else variant
    for variant in VARIANTS])
def test_recv_size_bounds_every_read(serve, model, flags, tmp_path):
    """--recv-size 4K: no read brings in more (asyncio's transport reads `max_size` bytes, set to
    it; io_uring's provided buffers are that size), and 1 MiB comes back exact."""
    stats_file = str(tmp_path / "stats.json")
    server = serve(model, *flags, "--recv-size", "4K", "--stats-file", stats_file)
    data = bytes(range(256)) * 4096
    with server.connect(timeout=60) as sock:
        assert support.exchange(sock, data) == data.upper()
    assert server.stop() == 0
    counters = read_final_counters(stats_file)
    assert counters["bytes_in"] == len(data)
    assert counters["recv_calls"] >= len(data) // 4096, counters


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_sigterm_under_load_exits_cleanly(serve, model, flags):
    """Clients connecting and talking while the stop arrives: no hang, no traceback, status 0."""
    server = serve(model, *flags, "--drain-timeout", "1")
    stop = threading.Event()
    served = []

    def hammer():
        while not stop.is_set():
            try:
                with server.connect(timeout=5) as sock:
                    for _ in range(20):
                        request(sock, b"load")
                    served.append(1)
            except (OSError, AssertionError):
                if stop.is_set():
                    return
                time.sleep(0.01)  # refused or cut off by the stop: try again until told to end

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert support.wait_until(lambda: len(served) >= 20, timeout=30)
    try:
        assert server.stop() == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.parametrize("model, flags", VARIANTS)
def test_max_connection_age_closes_even_busy_connections(serve, model, flags):
    server = serve(model, *flags, "--max-connection-age", "1")
    with server.connect() as sock:
        closed = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not closed:
            try:
                closed = request(sock, b"busy") != b"BUSY"
            except (OSError, AssertionError):  # reset or EOF: the age limit struck
                closed = True
            time.sleep(0.1)
        assert closed, "a connection outlived --max-connection-age 1 by more than 14 s"
    with server.connect() as fresh:
        assert request(fresh, b"fresh") == b"FRESH"
