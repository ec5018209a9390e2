"""Scenarios 24-29: the conformance checks through a hostile network, against every model.

tests/faultproxy.py sits between client and server and plays toxiproxy's faults: latency, a
bandwidth limit, 1-byte segments, a reset in the middle of a stream, a slow close, a data limit.
Replies must stay byte-exact where the network delivers them, and where it cuts a connection
the server must count it out and go on serving. One server per model serves the six faults in
turn, so a fault that leaves it damaged shows in the checks that follow.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading

import pytest

from tests import support
from tests.faultproxy import FaultProxy, Faults
from tests.reliability.helpers import per_model, read_stats, serves


@pytest.fixture(scope="module", params=per_model())
def model(request):
    return request.param


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """One server per model for the six faults (pytest groups the tests by model): started once,
    stopped by PID at the end, and checked like the `serve` fixture does (exit 0, no traceback)."""
    reason = support.skip_reason(model)
    if reason:
        pytest.skip(f"{model} cannot run here: {reason}")
    stats_file = tmp_path_factory.mktemp(f"proxy-{model}") / "stats.json"
    running = support.start_server(model, "--stats-file", str(stats_file))
    running.stats_path = stats_file
    try:
        yield running
    finally:
        status = running.stop(signal.SIGTERM)
    logged = running.stderr()
    assert status == 0, f"{model} server exited with status {status}: {logged[-2000:]}"
    assert "Traceback" not in logged and " ERROR " not in logged, logged[-4000:]


def _connections_drop_to_zero(server) -> bool:
    def open_now():
        path = server.stats_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.kill(server.pid, signal.SIGUSR1)
        support.wait_until(path.exists, timeout=5)
        return read_stats(path)["connections_open"]
    return support.wait_until(lambda: open_now() == 0, timeout=15, interval=0.2)


def _send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    def send():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy cut the connection: what the reader then sees is the test
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.scenario(24)
@pytest.mark.timeout(60)
def test_latency(server, model):
    """20 ms added to every chunk, each way; 20 requests of 1 B to 3 KB. Pass: byte-exact."""
    rng = random.Random(24)
    with FaultProxy(server.address, Faults(latency=0.02)) as proxy, \
            support.connect(proxy.address, timeout=20) as sock:
        for _ in range(20):
            data = rng.randbytes(rng.randint(1, 3000))
            assert support.request(sock, data) == data.upper()


@pytest.mark.scenario(25)
@pytest.mark.timeout(60)
def test_bandwidth_limit(server, model):
    """128 KiB/s each way; 96 KiB sent while the reply is read. Pass: byte-exact."""
    data = random.Random(25).randbytes(96 * 1024)
    with FaultProxy(server.address, Faults(bandwidth=128 * 1024)) as proxy, \
            support.connect(proxy.address, timeout=30) as sock:
        assert support.exchange(sock, data) == data.upper()


@pytest.mark.scenario(26)
@pytest.mark.timeout(60)
def test_one_byte_segments(server, model):
    """Every byte its own TCP segment, each way; 3 requests of 600 B. Pass: byte-exact."""
    rng = random.Random(26)
    with FaultProxy(server.address, Faults(slice_bytes=1)) as proxy, \
            support.connect(proxy.address, timeout=30) as sock:
        for _ in range(3):
            data = rng.randbytes(600)
            assert support.request(sock, data) == data.upper()


@pytest.mark.scenario(27)
@pytest.mark.timeout(60)
def test_reset_mid_stream(server, model):
    """A 512 KiB upload reset by the network after 64 KiB, both ways. Pass: the client sees the
    cut (a reset or a short reply), the server counts the connection out and keeps serving."""
    data = b"reset me " * (512 * 1024 // 9)
    with FaultProxy(server.address, Faults(reset_after=64 * 1024)) as proxy:
        with support.connect(proxy.address, timeout=30) as sock:
            _send_in_background(sock, data)
            received = 0
            with pytest.raises((ConnectionResetError, AssertionError)):
                received = len(support.recv_exactly(sock, len(data)))
            assert received < len(data)
        assert support.wait_until(lambda: proxy.resets == 1, timeout=10)
    assert serves(server)
    assert _connections_drop_to_zero(server)


@pytest.mark.scenario(28)
@pytest.mark.timeout(60)
def test_slow_close(server, model):
    """Each end of stream passed on 0.3 s late; the client half-closes after a 10 KB request.
    Pass: the whole reply, then EOF."""
    data = random.Random(28).randbytes(10_000)
    with FaultProxy(server.address, Faults(slow_close=0.3)) as proxy, \
            support.connect(proxy.address, timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert support.recv_until_eof(sock) == data.upper()


@pytest.mark.scenario(29)
@pytest.mark.timeout(60)
def test_data_limit(server, model):
    """The network closes both legs after 10,000 bytes downstream of a 64 KiB exchange. Pass:
    the client gets exactly that prefix of the reply, then EOF; the server counts the connection
    out and keeps serving."""
    data = random.Random(29).randbytes(64 * 1024)
    with FaultProxy(server.address, Faults(limit=10_000)) as proxy, \
            support.connect(proxy.address, timeout=30) as sock:
        _send_in_background(sock, data)
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        assert bytes(received) == data[:10_000].upper()
    assert serves(server)
    assert _connections_drop_to_zero(server)
