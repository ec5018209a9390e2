"""Scenario 16, the soak: mixed load in rounds; the server must look the same after the last as after the first.

A bounded run: 7 rounds of 2 s per event-driven model (about two minutes for all of them), each
round a mix of what the other scenarios do one at a time: busy request/reply clients, connection
churn, idle connections, a slow reader pushing 1 MiB, and resets mid-write. Between rounds, once the
round's connections are gone, the server's descriptors, threads and RSS are sampled; growth from
the first sample to the last is a leak that only shows over time. The first round is a warm-up,
not sampled: what a server allocates once under load (allocator arenas, buffers grown to their
working size) is not a leak.
"""

from __future__ import annotations

import random
import statistics
import time

import pytest

from tests import support
from tests.reliability.helpers import (
    EVENT_DRIVEN, HashingReader, fill_until_stalled, per_model, reset, run_all, settled_fds, total_fds)

WARM_UP_ROUNDS, ROUNDS, ROUND_SECONDS = 1, 6, 2.0
RSS_TOLERANCE = 0.05
# With every connection closed, what a server may hold beyond its size before any load: allocator
# arenas, buffers grown once (io_uring's provided-buffer ring, 512 KiB by default). Far more is memory that
# closed connections still keep.
RETAINED_LIMIT = 32 << 20


def _busy(server, deadline: float, seed: int) -> int:
    rng, exchanges = random.Random(seed), 0
    with server.connect(timeout=30) as sock:
        while time.monotonic() < deadline:
            data = rng.randbytes(rng.randint(1, 4096))
            assert support.request(sock, data) == data.upper()
            exchanges += 1
    return exchanges


def _churn(server, deadline: float) -> int:
    count = 0
    while time.monotonic() < deadline:
        with server.connect(timeout=30) as sock:
            assert support.request(sock, b"churn") == b"CHURN"
        count += 1
    return count


def _idle(server, deadline: float) -> int:
    socks = [server.connect(timeout=30) for _ in range(5)]
    for sock in socks:
        assert support.request(sock, b"idle") == b"IDLE"
    time.sleep(max(0.0, deadline - time.monotonic()))
    for sock in socks:
        sock.close()
    return len(socks)


def _slow_reader(server, deadline: float) -> int:
    data = random.Random(7).randbytes(1 << 20)
    with server.connect(rcvbuf=4096, timeout=30) as sock:
        reader = HashingReader(sock, limit=len(data))
        sock.sendall(data)
        count, _ = reader.result(timeout=60)
        assert count == len(data)
    return count


def _resets(server, deadline: float) -> int:
    count = 0
    while time.monotonic() < deadline:
        sock = server.connect(rcvbuf=4096, timeout=30)
        fill_until_stalled(sock, limit=1 << 20, quiet=0.1)
        reset(sock)
        count += 1
    return count


def _mixed_round(server, seconds: float, seed: int) -> None:
    deadline = time.monotonic() + seconds
    jobs = [lambda i=i: _busy(server, deadline, seed * 100 + i) for i in range(8)]
    jobs += [lambda: _churn(server, deadline), lambda: _idle(server, deadline),
             lambda: _slow_reader(server, deadline), lambda: _resets(server, deadline)]
    results = run_all(jobs, concurrently=True, timeout=seconds + 90)
    errors = [r for r in results if not isinstance(r, int)]
    assert not errors, errors


@pytest.mark.scenario(16)
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", per_model(
    only=EVENT_DRIVEN, only_reason="not event-driven: the soak is for the models that multiplex many "
    "connections in one thread (thread, process and busy-polling models: scenario 12's churn)"))
def test_soak_has_no_growth(serve, model, record_property):
    """Scenario 16. A warm-up round, then six 2 s rounds of mixed load (busy clients, churn, idle
    connections, a slow reader, resets). Pass: after the last round, descriptors and threads are no
    more than after the first; the median RSS of the last three rounds is at most 5 % above that of
    the first three (a leak grows every round; an allocator's one-off jump, seen once in CI, does
    not); and with no connection open, RSS is less than 32 MiB above what it was before any load."""
    server = serve(model, "--high-water", "64K", "--low-water", "16K")
    before_load = server.rss()
    samples = []
    for round_number in range(WARM_UP_ROUNDS + ROUNDS):
        _mixed_round(server, ROUND_SECONDS, seed=round_number)
        if round_number >= WARM_UP_ROUNDS:
            samples.append((settled_fds(server), server.num_threads(), server.rss()))
    fds0, threads0, _ = samples[0]
    # The last round's connections may still be closing: a bounded wait, not one sample.
    assert support.wait_until(lambda: total_fds(server) <= fds0 and server.num_threads() <= threads0,
                              timeout=10), (samples, total_fds(server), server.num_threads())
    rss1 = server.rss()
    half = len(samples) // 2
    first, last = (statistics.median(rss for _, _, rss in part) for part in (samples[:half], samples[half:]))
    record_property("rss_first_last_mib", f"{first / (1 << 20):.1f} -> {last / (1 << 20):.1f}")
    assert last <= first * (1 + RSS_TOLERANCE), (samples, rss1)
    assert rss1 - before_load < RETAINED_LIMIT, \
        f"{model}: {(rss1 - before_load) >> 20} MiB more than before any load, with no connection open"
