"""The counters the lab shows: who waits, who wakes for nothing, who spins on EAGAIN.

No rates and no durations are asserted: only what must be exactly so (an event-driven server with
nothing scheduled does not wake up at all; a busy-polling one never waits and fails its recv()s).
"""

from __future__ import annotations

import json
import random
import resource
import threading
import time

import pytest

from tests import support
from tests.support import request

pytestmark = pytest.mark.timeout(120)


def test_nonblocking_never_waits_and_counts_every_eagain(serve, tmp_path):
    path = str(tmp_path / "stats.json")
    server = serve("nonblocking", "--stats-file", path, "--drain-timeout", "0")
    with server.connect() as idle:
        assert request(idle, b"hello") == b"HELLO"
        first = support.read_counters(server, path)["recv_eagain"]
        assert support.wait_until(lambda: support.read_counters(server, path)["recv_eagain"] > first + 1000)
        # The final counters, written once the loop has ended: a live reading comes from another
        # thread and may catch a recv counted and its EAGAIN not yet.
        assert server.stop() == 0
    counters = support.read_stats_file(path)
    assert counters["wait_calls"] == 0
    assert counters["recv_calls"] - counters["recv_eagain"] == 1  # the one recv that found "hello"
    assert counters["empty_wakeups"] > 1000  # passes that found nothing to do
    assert counters["loop_iterations"] >= counters["recv_calls"]


# select wakes every --poll-interval by design (its own test below).
SLEEPERS = [name for name in support.models_where(kind="readiness", multi_worker=True) if name != "select"]


@pytest.mark.parametrize("model", SLEEPERS)
def test_event_driven_models_sleep_while_idle(serve, model, tmp_path):
    path = str(tmp_path / "stats.json")
    server = serve(model, "--stats-file", path)
    with server.connect() as idle:
        assert request(idle, b"hello") == b"HELLO"
        # The reply goes out before the loop turns back to its wait: let it get there first.
        support.wait_until(lambda: False, timeout=0.5)
        before = support.read_counters(server, path)
        time.sleep(1.0)
        after = support.read_counters(server, path)
    # Nothing is scheduled (no timeouts): no wake-up at all. The SIGUSR1 that asks for the counters
    # wakes only the signal relay's thread (sigio's wait, made through ctypes, used to return with
    # EINTR for it, when the main thread took the signals).
    assert after["wait_calls"] == before["wait_calls"]
    assert after["recv_calls"] == before["recv_calls"]


def test_select_wakes_every_poll_interval_and_counts_empty_wakeups(serve, tmp_path):
    path = str(tmp_path / "stats.json")
    server = serve("select", "--poll-interval", "0.05", "--stats-file", path)
    with server.connect() as idle:
        assert request(idle, b"hello") == b"HELLO"
        assert support.wait_until(lambda: support.read_counters(server, path)["empty_wakeups"] >= 5)
        counters = support.read_counters(server, path)
    assert counters["recv_eagain"] == 0  # it only calls recv() on what select() said is ready


def test_sigio_falls_back_to_a_full_scan_when_the_signal_queue_overflows(serve, tmp_path):
    """With RLIMIT_SIGPENDING at 1, the kernel drops real-time signals and sends plain SIGIO."""
    path = str(tmp_path / "stats.json")
    server = serve("sigio", "--stats-file", path)
    resource.prlimit(server.pid, resource.RLIMIT_SIGPENDING, (1, 1))
    results: dict[int, str] = {}
    threads = [threading.Thread(target=_chatter, args=(server.address, i, results)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: "ok" for i in range(10)}
    assert "overflowed" in server.stderr()
    assert server.stop() == 0


def _chatter(address, client_id: int, results: dict) -> None:
    rng = random.Random(client_id)
    try:
        with support.connect(address, timeout=30) as sock:
            for _ in range(30):
                data = rng.randbytes(rng.randint(1, 100_000))
                if support.exchange(sock, data) != data.upper():
                    results[client_id] = "mismatch"
                    return
        results[client_id] = "ok"
    except (OSError, AssertionError) as exc:
        results[client_id] = repr(exc)


@pytest.mark.parametrize("model, flags", support.variants(
    support.models_where(kind="event loop") + support.models_where(kind="completion")))
def test_event_loop_counters_show_the_loop_at_work(serve, model, flags, tmp_path):
    stats_file = str(tmp_path / "stats.json")
    server = serve(model, *flags, "--stats-file", stats_file)
    requests = 100
    with server.connect() as sock:
        for _ in range(requests):
            request(sock, b"count me")
    assert server.stop() == 0
    counters = support.read_stats_file(stats_file)
    assert counters["bytes_in"] == counters["bytes_out"] == requests * len(b"count me")
    assert counters["loop_iterations"] >= requests
    assert counters["events"] >= requests
    if model == "io_uring":  # a receive completes per request (a send only if it fails), in batches
        assert counters["completions"] >= requests
        # At most one io_uring_enter per turn of the loop, and a few to start and to stop.
        assert 0 < counters["submits"] <= counters["loop_iterations"] + 10, counters
    else:
        assert counters["submits"] == counters["completions"] == 0
    print(model, flags, json.dumps({k: counters[k] for k in (
        "loop_iterations", "wait_calls", "events", "submits", "completions")}))
