"""Lifecycle behaviour of every model that serves clients concurrently, one body each: idle
connections time out while busy ones stay, a stop under load exits cleanly, every read is bounded.

(The drain, the idle timeout and the age limit in detail: tests/reliability, scenarios 5, 6, 10.)
"""

from __future__ import annotations

import threading
import time

import pytest

from iomodels.serving import models
from tests import support
from tests.support import request

pytestmark = pytest.mark.timeout(120)

CONCURRENT = support.variants(support.CONCURRENT_MODELS)
# Models whose every read is at most --recv-size (not uvloop: libuv reads into its own buffer).
BOUNDED_READS = [name for name in support.ALL_MODELS if "recv_size" in models.info(name).reads]


def _pool_for(model: str, clients: int) -> tuple[str, ...]:
    """threadpool serves at most --threads clients at once: size it to the test's clients."""
    return ("--threads", str(clients + 2)) if model == "threadpool" else ()


@pytest.mark.parametrize("model, flags", CONCURRENT)
def test_idle_connections_close_while_busy_ones_stay(serve, model, flags):
    server = serve(model, *flags, "--idle-timeout", "1", *_pool_for(model, 2))
    with server.connect() as idle, server.connect() as busy:
        assert request(idle, b"once") == b"ONCE"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # a request every 0.2 s, well inside the timeout
            assert request(busy, b"tick") == b"TICK"
            time.sleep(0.2)
        assert support.is_closed_by_peer(idle, timeout=10)
        assert request(busy, b"still open") == b"STILL OPEN"


@pytest.mark.parametrize("model, flags", CONCURRENT)
def test_sigterm_under_load_exits_cleanly(serve, model, flags):
    """Clients connecting and talking while the stop arrives: no hang, no traceback, status 0."""
    server = serve(model, *flags, "--drain-timeout", "1", *_pool_for(model, 8))
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


@pytest.mark.parametrize("model, flags", support.variants(BOUNDED_READS))
def test_recv_size_bounds_every_read(serve, model, flags, tmp_path):
    """--recv-size 4K: no read brings in more, and 1 MiB comes back exact."""
    stats_file = str(tmp_path / "stats.json")
    server = serve(model, *flags, "--recv-size", "4K", "--stats-file", stats_file)
    data = bytes(range(256)) * 4096
    with server.connect(timeout=60) as sock:
        assert support.exchange(sock, data) == data.upper()
    assert server.stop() == 0
    counters = support.read_stats_file(stats_file)
    assert counters["bytes_in"] == len(data)
    assert counters["recv_calls"] >= len(data) // 4096, counters
