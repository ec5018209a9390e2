"""The conformance suite: every registered model must pass all of it (DESIGN.md, convention 7).

A new model gets these tests by being registered. The only exceptions are by nature: the iterative
`blocking` model serves one client at a time, so concurrency tests run its clients one after the
other, and the tests of what happens to concurrent clients (max-connections) do not apply to it.
"""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from tests import support
from tests.support import ALL_MODELS, CONCURRENT_MODELS, exchange, recv_exactly, recv_until_eof, request

pytestmark = pytest.mark.timeout(120)

ALL_BYTES = bytes(range(256))


@pytest.fixture(params=ALL_MODELS)
def model(request):
    return request.param


def test_hello(serve, model):
    server = serve(model)
    with server.connect() as sock:
        assert request(sock, b"hello") == b"HELLO"


def test_all_byte_values_only_ascii_letters_change(serve, model):
    server = serve(model)
    with server.connect() as sock:
        assert request(sock, ALL_BYTES) == ALL_BYTES.upper()
        assert request(sock, b"\xe9t\xe9 @[`{ z\xff") == b"\xe9T\xe9 @[`{ Z\xff"


@pytest.mark.parametrize("size", [1, 1023, 1025, 65536 + 7, 1 << 20])
def test_payload_sizes_are_byte_exact(serve, model, size):
    server = serve(model)
    data = random.Random(size).randbytes(size)
    with server.connect() as sock:
        assert exchange(sock, data) == data.upper()


def test_many_messages_on_one_connection(serve, model):
    server = serve(model)
    rng = random.Random(7)
    with server.connect() as sock:
        for _ in range(200):
            data = rng.randbytes(rng.randint(1, 3000))
            assert request(sock, data) == data.upper()


def _client_session(address, client_id: int, messages: int, results: dict) -> None:
    rng = random.Random(client_id)
    try:
        with support.connect(address, timeout=60) as sock:
            for _ in range(messages):
                data = rng.randbytes(rng.randint(1, 2048))
                if request(sock, data) != data.upper():
                    results[client_id] = "mismatch"
                    return
        results[client_id] = "ok"
    except OSError as exc:
        results[client_id] = repr(exc)


def test_fifty_concurrent_clients(serve, model):
    server = serve(model)
    results: dict[int, str] = {}
    if model in CONCURRENT_MODELS:
        threads = [threading.Thread(target=_client_session, args=(server.address, i, 20, results))
                   for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    else:  # one client at a time is the iterative server's nature: run them one after another
        for i in range(50):
            _client_session(server.address, i, 20, results)
    assert results == {i: "ok" for i in range(50)}


def test_tutorial_client_single_recv(serve, model):
    """The tutorial's client sends a line and prints what one recv(1024) returns."""
    server = serve(model)
    with server.connect() as sock:
        for text in ("hello", "select/epoll 1.3", "x" * 1000):
            sock.send(text.encode("utf-8"))
            assert sock.recv(1024).decode("utf-8") == text.upper()


def test_half_close_all_output_then_eof(serve, model):
    server = serve(model)
    data = random.Random(3).randbytes(300_000)
    with server.connect() as sock:
        reader_result = []
        reader = threading.Thread(target=lambda: reader_result.append(recv_until_eof(sock)))
        reader.start()
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader.join(60)
        assert reader_result and reader_result[0] == data.upper()


def test_slow_reader_is_byte_exact_with_bounded_server_memory(serve, model):
    """A client with a tiny receive buffer pushes 16 MiB and reads only after the server stalled."""
    server = serve(model, "--high-water", "64K", "--low-water", "16K")
    size = 16 << 20
    data = random.Random(16).randbytes(size)
    with server.connect(rcvbuf=4096, timeout=60) as sock:
        assert request(sock, b"warm up") == b"WARM UP"
        baseline = server.rss()
        sent = []

        def writer():
            try:
                sock.sendall(data)
                sent.append(len(data))
            except OSError as exc:
                sent.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        thread.join(1.5)  # not reading: the server must stop reading too, not buffer our 16 MiB
        growth = server.rss() - baseline
        assert thread.is_alive(), "the server took all 16 MiB from a client that reads nothing"
        assert growth < 8 << 20, f"server memory grew by {growth} bytes for a client that reads nothing"
        reply = recv_exactly(sock, size)
        thread.join(30)
        assert sent == [size]
        assert reply == data.upper()


def test_reset_mid_transfer_does_not_hurt_others(serve, model):
    server = serve(model, "--high-water", "64K", "--low-water", "16K")
    if model in CONCURRENT_MODELS:
        other = server.connect()
        assert request(other, b"before") == b"BEFORE"
    victim = server.connect(rcvbuf=4096)
    victim.setblocking(False)
    try:
        victim.send(os.urandom(512 * 1024))  # the server now has output it cannot deliver
    except BlockingIOError:
        pass
    victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    victim.close()  # RST
    with server.connect() as fresh:
        assert request(fresh, b"after") == b"AFTER"
    if model in CONCURRENT_MODELS:
        assert request(other, b"still here") == b"STILL HERE"
        other.close()
    assert "Traceback" not in server.stderr()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_max_connections_closes_extra_clients(serve, model):
    server = serve(model, "--max-connections", "2")
    first, second = server.connect(), server.connect()
    assert request(first, b"one") == b"ONE"
    assert request(second, b"two") == b"TWO"
    try:
        extra = server.connect()
    except ConnectionResetError:
        pass  # accepted and reset before connect() returned: refused, as it should be
    else:
        assert support.is_closed_by_peer(extra), "a third connection was kept open beyond --max-connections 2"
        extra.close()
    first.close()

    def third_is_served():
        try:
            with server.connect(timeout=2) as sock:
                return request(sock, b"three") == b"THREE"
        except (OSError, AssertionError):
            return False

    assert support.wait_until(third_is_served, timeout=15), "no room made after a client left"
    second.close()


def test_idle_timeout_closes_silent_connections(serve, model):
    server = serve(model, "--idle-timeout", "0.5")
    with server.connect() as sock:
        assert request(sock, b"hi") == b"HI"
        assert support.is_closed_by_peer(sock, timeout=15)
    with server.connect() as sock:  # still serving
        assert request(sock, b"again") == b"AGAIN"


def test_sigterm_exits_zero_without_leftovers(serve, model):
    server = serve(model, "--drain-timeout", "1")
    idle = server.connect()
    assert request(idle, b"x") == b"X"
    assert server.stop() == 0  # fixture-level check: no child process left either
    assert support.is_closed_by_peer(idle, timeout=5)
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        server.connect(timeout=2)


def test_no_fd_leak_after_connect_close_cycles(serve, model):
    server = serve(model)
    with server.connect() as sock:
        request(sock, b"warm")
    baseline = server.num_fds()
    for i in range(200):
        with server.connect() as sock:
            if i % 2:
                assert request(sock, b"cycle") == b"CYCLE"
    assert support.wait_until(lambda: server.num_fds() <= baseline, timeout=10), \
        f"{server.num_fds()} fds open after 200 cycles, {baseline} before"


def test_blocking_server_is_deaf_to_a_second_client(serve):
    """Its documented nature (tutorial 1.1): while one client is connected, the next waits unanswered."""
    server = serve("blocking")
    first = server.connect()
    assert request(first, b"first") == b"FIRST"
    second = server.connect(timeout=1.0)  # the handshake completes in the kernel's backlog
    second.sendall(b"second")
    with pytest.raises(TimeoutError):
        second.recv(16)
    first.close()  # the server is free: now it takes the second client
    second.settimeout(10)
    assert recv_exactly(second, 6) == b"SECOND"
    second.close()
