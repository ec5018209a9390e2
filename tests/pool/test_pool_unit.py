"""The pool against an in-process server that misbehaves on cue: dead, reset, hung-up and cut
connections, the size bound, waiting, PoolTimeout, expiry and close."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from iomodels.client import ConnectionPool, PoolTimeout
from iomodels.client.pool import PoolClosed, peer_closed
from tests.pool.helpers import hammer
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def pool_for(server, **kwargs) -> ConnectionPool:
    return ConnectionPool(*server.address, **kwargs)


def idle_all_dead(pool: ConnectionPool) -> bool:
    return all(peer_closed(entry.client.sock) for entry in pool._idle)


def fill(pool: ConnectionPool, count: int) -> None:
    """Open `count` connections at once (each checked out while the others are), then return them."""
    with contextlib.ExitStack() as stack:
        for client in [stack.enter_context(pool.connection()) for _ in range(count)]:
            assert client.request(b"fill") == b"FILL"


def test_reuses_one_connection_for_sequential_requests(fake_server):
    with pool_for(fake_server) as pool:
        for i in range(20):
            assert pool.request(b"abc%d" % i) == b"ABC%d" % i
        assert (pool.stats.created, pool.stats.reused, pool.stats.discarded) == (1, 19, 0)
        assert fake_server.accepted == 1
        assert len(pool.stats.wait_times) == 20 and pool.stats.waits == 0


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_connections_closed_while_idle_are_discarded_never_handed_out(fake_server, reset):
    with pool_for(fake_server, max_size=3, peek_after=0) as pool:
        fill(pool, 3)
        assert pool.idle == 3
        fake_server.close_existing(reset=reset)
        assert wait_until(lambda: idle_all_dead(pool), timeout=10)
        for i in range(5):
            assert pool.request(b"after %d" % i) == b"AFTER %d" % i
        assert pool.stats.discarded == 3
        assert pool.stats.created == 4
        assert pool.stats.retried == 0  # the peek caught every one: no request was sent on them


def test_stale_connection_that_hangs_up_on_the_request_is_retried_once(fake_server):
    with pool_for(fake_server) as pool:
        assert pool.request(b"one") == b"ONE"
        # The server will close this connection on its next request without answering: the peek
        # passes, the request fails before any reply byte, and the pool retries on a new connection.
        fake_server.set_existing("hangup")
        assert pool.request(b"two") == b"TWO"
        assert (pool.stats.retried, pool.stats.discarded, pool.stats.created) == (1, 1, 2)
        assert pool.size == 1


def test_a_fresh_connection_failing_is_not_retried(fake_server):
    fake_server.mode = "hangup"
    with pool_for(fake_server) as pool:
        with pytest.raises(ConnectionError):
            pool.request(b"x")
        assert (pool.stats.retried, pool.stats.discarded, pool.size) == (0, 1, 0)
        assert fake_server.accepted == 1


def test_a_reply_cut_after_some_bytes_is_not_retried(fake_server):
    with pool_for(fake_server) as pool:
        assert pool.request(b"one") == b"ONE"
        fake_server.set_existing("cut")
        with pytest.raises(ConnectionError, match="after 1 of 5 bytes"):
            pool.request(b"hello")
        assert (pool.stats.retried, pool.stats.discarded, pool.size) == (0, 1, 0)
        assert pool.request(b"again") == b"AGAIN"  # a new connection, echoing normally


def test_peer_closed_sees_eof_reset_and_unsolicited_bytes():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for ending in ("alive", "eof", "reset", "bytes"):
            with socket.create_connection(listener.getsockname(), timeout=7) as client:
                server_side, _ = listener.accept()
                with server_side:
                    if ending == "reset":
                        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    if ending in ("eof", "reset"):
                        server_side.close()
                    if ending == "bytes":
                        server_side.sendall(b"?")
                    if ending == "alive":
                        assert not peer_closed(client)
                    else:
                        assert wait_until(lambda: peer_closed(client), timeout=10), ending
                    assert client.gettimeout() == 7  # the peek leaves the timeout as it was


def test_all_busy_raises_pool_timeout_with_a_clear_message(fake_server):
    with pool_for(fake_server, max_size=2, acquire_timeout=0.2) as pool:
        with pool.connection(), pool.connection():
            with pytest.raises(PoolTimeout, match=r"all 2 connections to 127\.0\.0\.1:\d+ busy for 0\.2 s"):
                pool.request(b"x")
        assert (pool.stats.timeouts, pool.stats.waits, pool.size) == (1, 1, 2)
        assert pool.request(b"x") == b"X"  # once they are returned, the pool works again


def test_a_waiter_gets_the_connection_returned_to_the_pool(fake_server):
    with pool_for(fake_server, max_size=1, acquire_timeout=30) as pool:
        replies = []
        with pool.connection():
            waiter = threading.Thread(target=lambda: replies.append(pool.request(b"waited")))
            waiter.start()
            assert wait_until(lambda: pool.stats.waits == 1, timeout=10)
        waiter.join(30)
        assert replies == [b"WAITED"]
        assert (pool.stats.created, pool.stats.reused) == (1, 1)
        assert max(pool.stats.wait_times) > 0


def test_many_threads_share_a_small_pool_and_never_exceed_it(fake_server):
    max_size, threads, per_thread = 3, 12, 40
    with pool_for(fake_server, max_size=max_size, acquire_timeout=30) as pool:
        sizes = hammer(pool, threads, per_thread, lambda n, i: b"t%d-m%d-" % (n, i) + b"abcxyz" * (i % 5))
        assert max(sizes) <= max_size
        assert pool.stats.created <= max_size and fake_server.accepted <= max_size
        assert len(pool.stats.wait_times) == threads * per_thread


def test_idle_connections_expire(fake_server):
    with pool_for(fake_server, max_size=2, idle_expiry=0.05) as pool:
        fill(pool, 2)
        time.sleep(0.2)  # longer than idle_expiry: both are past it, whatever the machine's load
        assert pool.request(b"x") == b"X"
        assert (pool.stats.expired, pool.stats.created, pool.size) == (2, 3, 1)


def test_connect_failure_gives_the_slot_back():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = probe.getsockname()  # a port that refuses connections once closed
    with ConnectionPool(*address, max_size=1, acquire_timeout=0) as pool:
        for _ in range(2):  # the second attempt would be PoolTimeout if the slot had leaked
            with pytest.raises(ConnectionRefusedError):
                pool.request(b"x")
        assert pool.size == 0


def test_an_error_inside_connection_block_discards_the_connection(fake_server):
    with pool_for(fake_server) as pool:
        with pytest.raises(KeyError):
            with pool.connection() as client:
                client.sock.sendall(b"half a request whose reply we never read")
                raise KeyError("boom")
        assert (pool.stats.discarded, pool.size) == (1, 0)


def test_a_connection_closed_by_its_borrower_is_discarded_on_the_next_checkout(fake_server):
    with pool_for(fake_server) as pool:
        with pool.connection() as client:
            client.close()
        assert pool.request(b"x") == b"X"
        assert (pool.stats.discarded, pool.stats.created, pool.size) == (1, 2, 1)


def test_close_closes_idle_at_once_busy_on_return_and_wakes_waiters(fake_server):
    pool = pool_for(fake_server, max_size=1, acquire_timeout=30)
    outcome = []
    with pool.connection() as client:
        waiter = threading.Thread(target=lambda: outcome.append(_catch(pool.request, b"x")))
        waiter.start()
        assert wait_until(lambda: pool.stats.waits == 1, timeout=10)
        pool.close()
        waiter.join(10)
        assert not waiter.is_alive() and isinstance(outcome[0], PoolClosed)
        assert client.request(b"still mine") == b"STILL MINE"
    assert client.sock.fileno() == -1 and pool.size == 0
    with pytest.raises(PoolClosed):
        pool.request(b"x")


def test_invalid_settings_are_refused():
    for kwargs in ({"max_size": 0}, {"acquire_timeout": -1}, {"idle_expiry": 0}, {"request_timeout": 0}):
        with pytest.raises(ValueError):
            ConnectionPool("127.0.0.1", 1, **kwargs)


def _catch(func, *args):
    try:
        return func(*args)
    except Exception as exc:
        return exc
