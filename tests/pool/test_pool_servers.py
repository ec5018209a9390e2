"""The pool against real servers: shared by many threads, and outliving connections the server
closes under its feet (`--idle-timeout`)."""

from __future__ import annotations

import contextlib
import random

import pytest

from iomodels.client import ConnectionPool, PoolTimeout
from iomodels.client.pool import peer_closed
from tests.pool.helpers import hammer
from tests.support import ALL_MODELS, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["threaded", "epoll"])
def model(request):
    if request.param not in ALL_MODELS:
        pytest.skip(f"model {request.param} is not registered yet")
    return request.param


def test_many_threads_share_a_small_pool_byte_exact(serve, model):
    server = serve(model)
    threads, per_thread, max_size = 10, 60, 3
    with ConnectionPool(*server.address, max_size=max_size, acquire_timeout=60) as pool:
        hammer(pool, threads, per_thread, lambda n, i: random.Random(n * per_thread + i).randbytes(1 + i * 80))
        assert pool.stats.created <= max_size
        assert pool.stats.reused == threads * per_thread - pool.stats.created
        assert len(pool.stats.wait_times) == threads * per_thread


def test_server_closing_idle_connections_under_the_pool(serve, model):
    server = serve(model, "--idle-timeout", "0.3")
    with ConnectionPool(*server.address, max_size=4, peek_after=0) as pool:
        with contextlib.ExitStack() as stack:  # four connections open at once
            for client in [stack.enter_context(pool.connection()) for _ in range(4)]:
                assert client.request(b"before") == b"BEFORE"
        assert pool.idle == 4
        # The server closes them after 0.3 s of silence; wait until all four show it.
        assert wait_until(lambda: all(peer_closed(e.client.sock) for e in pool._idle), timeout=20)
        for i in range(10):
            assert pool.request(b"after %d" % i) == b"AFTER %d" % i
        # At least the four dead ones; more if the box was slow enough for the new one to idle out.
        assert pool.stats.discarded >= 4
        assert pool.stats.created >= 5


def test_pool_timeout_when_every_connection_is_held(serve, model):
    server = serve(model)
    with ConnectionPool(*server.address, max_size=2, acquire_timeout=0.1) as pool:
        with pool.connection() as first, pool.connection() as second:
            with pytest.raises(PoolTimeout, match="all 2 connections"):
                pool.request(b"x")
            assert first.request(b"a") == b"A" and second.request(b"b") == b"B"
        assert pool.request(b"free again") == b"FREE AGAIN"
