"""First come, first served: a returned connection goes to the caller that has waited longest, and
a caller that arrives (or comes back) while others wait queues behind them. Deterministic: each
waiter is queued before the next one starts, and nothing is timed."""

from __future__ import annotations

import threading

import pytest

from iomodels.client import ConnectionPool
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def _queue_waiters(pool, count: int, served: list) -> list[threading.Thread]:
    """Start `count` callers one after another, each queued (pool.stats.waits counts it) before
    the next starts; each records its number when it gets the connection."""
    threads = []
    for n in range(count):
        def caller(n=n):
            with pool.connection() as client:
                served.append(n)
                assert client.request(b"w%d" % n) == b"W%d" % n
        thread = threading.Thread(target=caller)
        thread.start()
        threads.append(thread)
        assert wait_until(lambda: pool.stats.waits == n + 1, timeout=10)
    return threads


@pytest.mark.parametrize("waiters", [2, 8])
def test_returned_connections_go_to_the_longest_waiter(fake_server, waiters):
    with ConnectionPool(*fake_server.address, max_size=1, acquire_timeout=30) as pool:
        served: list = []
        with pool.connection():
            threads = _queue_waiters(pool, waiters, served)
        # The holder comes straight back for more: it must queue behind every waiter (no barging).
        assert pool.request(b"again") == b"AGAIN"
        served.append("holder")
        for thread in threads:
            thread.join(30)
        assert served == [*range(waiters), "holder"]
        assert pool.stats.handoffs >= waiters and pool.stats.created == 1


def test_fifo_with_several_connections_under_contention(fake_server):
    """Two connections, six queued callers: they are served in the order they queued."""
    with ConnectionPool(*fake_server.address, max_size=2, acquire_timeout=30) as pool:
        served: list = []
        with pool.connection(), pool.connection():
            threads = _queue_waiters(pool, 6, served)
        for thread in threads:
            thread.join(30)
        assert sorted(served) == list(range(6))
        # Two connections serve two callers at a time: each caller is served no later than one
        # place after its turn (the two holders of a round may append in either order).
        assert all(abs(position - n) <= 1 for position, n in enumerate(served)), served


def test_a_freed_slot_goes_to_the_longest_waiter(fake_server):
    """A connection discarded while callers wait gives its slot to the first of them."""
    with ConnectionPool(*fake_server.address, max_size=1, acquire_timeout=30) as pool:
        served: list = []
        with pytest.raises(KeyError):
            with pool.connection():
                threads = _queue_waiters(pool, 3, served)
                raise KeyError("the holder's block fails: its connection is discarded")
        for thread in threads:
            thread.join(30)
        assert served == [0, 1, 2]
        assert pool.stats.discarded == 1 and pool.stats.created == 2


def test_the_liveness_peek_is_only_for_connections_idle_a_while(fake_server):
    with ConnectionPool(*fake_server.address, peek_after=3600) as pool:
        for i in range(5):
            pool.request(b"x")
        assert pool.stats.peeks == 0 and pool.stats.reused == 4
    with ConnectionPool(*fake_server.address, peek_after=0) as pool:
        for i in range(5):
            pool.request(b"x")
        assert pool.stats.peeks == 4
