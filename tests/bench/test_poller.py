"""The bench worker's Poller on a real event loop: what it reads, and how a connection ends."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from iomodels.bench.poller import Poller


class Recorder:
    """A connection that notes what the Poller tells it."""

    def __init__(self, read_size=4096):
        self.read_size = read_size
        self.received: list[bytes] = []
        self.lost_with: list = []
        self.writable_calls = 0
        self.sock = None

    def attached(self, sock, poller):
        self.sock, self.poller = sock, poller

    def data_received(self, data):
        self.received.append(data)

    def lost(self, exc):
        self.lost_with.append(exc)
        self.poller.forget(self.sock.fileno())
        self.sock.close()

    def writable(self):
        self.writable_calls += 1
        self.poller.watch_writes(self.sock.fileno(), False)


async def settle(until, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not until():
        assert asyncio.get_running_loop().time() < deadline, "the Poller never got there"
        await asyncio.sleep(0.005)


def run(body):
    uvloop.run(body())


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def test_reads_at_most_read_size_and_keeps_the_rest_for_the_next_read(pair):
    ours, peer = pair

    async def body():
        poller, recorder = Poller(asyncio.get_running_loop()), Recorder(read_size=5)
        poller.attach(ours, recorder)
        peer.sendall(b"abcdefghijkl")
        await settle(lambda: sum(map(len, recorder.received)) == 12)
        poller.close()
        assert [len(chunk) <= 5 for chunk in recorder.received] == [True] * len(recorder.received)
        assert b"".join(recorder.received) == b"abcdefghijkl"

    run(body)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_an_end_from_the_server_is_reported_once(pair, how):
    ours, peer = pair

    async def body():
        poller, recorder = Poller(asyncio.get_running_loop()), Recorder()
        poller.attach(ours, recorder)
        if how == "reset":  # closing with data unread: the other end gets ECONNRESET
            ours.send(b"unread")
        peer.close()
        await settle(lambda: recorder.lost_with)
        await asyncio.sleep(0.05)  # no second report
        poller.close()
        assert len(recorder.lost_with) == 1
        exc = recorder.lost_with[0]
        assert isinstance(exc, ConnectionResetError) if how == "reset" else exc is None

    run(body)


def test_writable_is_called_only_while_asked_for(pair):
    ours, peer = pair

    async def body():
        poller, recorder = Poller(asyncio.get_running_loop()), Recorder()
        poller.attach(ours, recorder)
        await asyncio.sleep(0.02)
        assert recorder.writable_calls == 0
        poller.watch_writes(ours.fileno(), True)
        await settle(lambda: recorder.writable_calls)
        await asyncio.sleep(0.02)
        poller.close()
        assert recorder.writable_calls == 1  # it stopped asking at the first call

    run(body)
