"""The short path of the readiness loop (`ReadinessLoop.echo`), driven one wait at a time, in-process.

Deterministic: the client's bytes are in the server's socket before the loop waits, so each case
below is exactly the event the loop sees, with no timing involved.
"""

from __future__ import annotations

import socket

import pytest

from iomodels.serving.config import ServerConfig
from iomodels.serving.models.epoll import EpollLoop
from iomodels.serving.models.epoll_et import EdgeEpollLoop
from iomodels.serving.models.poll import PollLoop
from iomodels.serving.models.select import SelectLoop
from iomodels.serving.toolkit import Stop, session_factory
from iomodels.serving.stats import Stats

LOOPS = [EpollLoop, EdgeEpollLoop, PollLoop, SelectLoop]


class Harness:
    def __init__(self, loop_class, **config):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stats, self.stop = Stats(), Stop(1.0)
        config = ServerConfig(**config)
        self.loop = loop_class(self.listener, config, self.stats, self.stop, session_factory(config))
        self.loop.listening = True
        self.loop.watch(self.loop.listener_fd, self.loop.READ)
        self.client = socket.create_connection(self.listener.getsockname(), timeout=10)
        self.turn()  # accept it (edge-triggered, also a first read: the request may be there)
        assert len(self.loop.conns) == 1
        self.after_accept = self.stats.snapshot()

    def counted(self, name: str) -> int:
        """How much `name` grew since the connection was accepted."""
        return getattr(self.stats, name) - self.after_accept[name]

    def turn(self, times: int = 1) -> None:
        for _ in range(times):
            self.loop.wait(0.5)

    def close(self) -> None:
        for conn in list(self.loop.conns.values()):
            self.loop.close(conn)
        self.loop.close_waiter()
        self.client.close()
        self.listener.close()
        self.stop.close()


@pytest.fixture
def harness(request):
    made = []

    def make(loop_class, **config):
        made.append(Harness(loop_class, **config))
        return made[-1]

    yield make
    for h in made:
        h.close()


@pytest.mark.parametrize("loop_class", LOOPS)
def test_requests_on_an_idle_connection_are_echoed_and_counted(harness, loop_class):
    h = harness(loop_class)
    for i in range(20):
        h.client.sendall(b"ping %d" % i)
        h.turn()
        assert h.client.recv(100) == b"PING %d" % i
    assert (h.counted("recv_calls"), h.counted("send_calls")) == (20, 20)
    assert h.counted("bytes_in") == h.counted("bytes_out") == sum(len(b"ping %d" % i) for i in range(20))


def test_edge_triggered_saves_the_recv_that_would_only_say_eagain(harness):
    """A short read proves the socket drained (epoll(7)): no EAGAIN per request."""
    h = harness(EdgeEpollLoop)
    for _ in range(20):
        h.client.sendall(b"x" * 100)
        h.turn()
        assert h.client.recv(200) == b"X" * 100
    assert h.counted("recv_eagain") == 0
    assert h.counted("recv_calls") == 20


@pytest.mark.parametrize("loop_class", LOOPS)
def test_data_and_fin_announced_together_are_both_handled(harness, loop_class):
    """Edge-triggered, one notice covers both: after the short read the FIN is still unread, and
    only EPOLLRDHUP says so. Missing it would leave the connection open forever."""
    h = harness(loop_class)
    h.client.sendall(b"last words")
    h.client.shutdown(socket.SHUT_WR)
    h.turn(2)
    assert h.client.recv(100) == b"LAST WORDS"
    assert h.client.recv(100) == b""  # the server closed: it saw the end of input
    assert not h.loop.conns


@pytest.mark.parametrize("loop_class", LOOPS)
def test_a_reply_the_kernel_takes_only_in_part_is_queued_then_sent(harness, loop_class):
    """The client does not read, so its receive buffer and our send buffer fill: the short path
    hands the rest to the session, and the connection waits to write."""
    h = harness(loop_class, recv_size=256 * 1024, high_water=16 << 20, low_water=1 << 20)
    conn = next(iter(h.loop.conns.values()))
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = bytes(range(97, 123)) * 20_000  # 520 KB of lowercase letters
    h.client.setblocking(False)
    sent = 0
    while sent < len(payload):
        try:
            sent += h.client.send(payload[sent:])
        except BlockingIOError:
            h.turn()
    h.turn(3)
    assert conn.session.pending_size > 0 and conn.mask & h.loop.WRITE
    received = bytearray()
    h.client.setblocking(True)
    while len(received) < len(payload):
        h.turn()
        received += h.client.recv(1 << 20)
    assert bytes(received) == payload.upper()
    assert h.stats.send_partial + h.stats.send_eagain > 0
