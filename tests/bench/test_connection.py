"""The connection protocol fed by hand: however replies are cut or glued, verification holds."""

from __future__ import annotations

import contextlib
import socket

import pytest

from iomodels.bench.connection import Connection, CountingConnection, Tally
from iomodels.bench.payload import Messages, Size


class FakeTransport:
    """Its socket is one end of a non-blocking socketpair: direct writes land in the other end;
    what goes through write() is kept, as the loop would, to go out after them."""

    def __init__(self):
        self.ours, self.peer = socket.socketpair()
        self.ours.setblocking(False)
        self.peer.setblocking(False)
        self.buffered = bytearray()
        self.aborted = False

    def get_extra_info(self, name):
        return self.ours if name == "socket" else None

    def get_write_buffer_size(self):
        return len(self.buffered)

    def write(self, data):
        self.buffered += data

    def abort(self):
        self.aborted = True

    def take(self) -> bytes:
        """Everything sent so far, in wire order, as the server would read it."""
        data = bytearray()
        with contextlib.suppress(BlockingIOError):
            while chunk := self.peer.recv(1 << 20):
                data += chunk
        data += self.buffered
        self.buffered.clear()
        return bytes(data)

    def close(self):
        self.ours.close()
        self.peer.close()


@pytest.fixture
def transports():
    made: list[FakeTransport] = []
    yield made
    for transport in made:
        transport.close()


def connection(transports, depth: int, size=Size(5, 40), kind=Connection, refill=True):
    tally = Tally()
    conn = kind(tally, Messages(size, seed=7).script(3), refill=refill)
    transport = FakeTransport()
    transports.append(transport)
    conn.connection_made(transport)
    if refill:
        conn.start(depth)
    return conn, tally, transport


def serve(transport: FakeTransport, reply=bytes.upper) -> bytes:
    """Everything the client sent so far, answered."""
    return reply(transport.take())


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_replies_cut_anywhere_are_all_verified(transports, depth, cut):
    conn, tally, transport = connection(transports, depth, kind=CountingConnection)
    received = 0
    for _ in range(20):
        reply = serve(transport)
        for i in range(0, len(reply), cut):
            conn.data_received(reply[i:i + cut])
        received += len(reply)
    assert tally.mismatches == tally.protocol_errors == 0
    assert len(tally.latencies) >= 20 and conn.nbytes == received


def test_a_wrong_byte_is_one_mismatch_and_the_stream_stays_in_step(transports):
    conn, tally, transport = connection(transports, 1, size=Size(64, 64))
    reply = bytearray(serve(transport))
    reply[10] ^= 0x20
    conn.data_received(bytes(reply))
    for _ in range(5):
        conn.data_received(serve(transport))
    assert tally.mismatches == 1 and len(tally.latencies) == 6


def test_bytes_beyond_what_was_sent_are_a_protocol_error(transports):
    conn, tally, transport = connection(transports, 1)
    conn.data_received(serve(transport) + b"!")
    assert tally.protocol_errors == 1 and transport.aborted and conn.closing


def test_open_loop_sends_on_demand_and_times_from_the_intended_instant(transports):
    conn, tally, transport = connection(transports, 0, size=Size(8, 8), refill=False)
    for intended in (1, 2, 3):
        conn.send(intended)
    conn.data_received(serve(transport))
    assert len(tally.latencies) == 3 and transport.take() == b""  # no refill in open loop
    assert tally.latencies[0] > tally.latencies[2]  # the earliest intended is the longest wait


def test_what_the_socket_does_not_take_goes_through_the_transport_in_order(transports):
    conn, tally, transport = connection(transports, 1, size=Size(1 << 20, 1 << 20))
    assert not conn.direct and transport.buffered  # 1 MiB does not fit a socketpair's buffer
    conn.data_received(serve(transport))
    assert tally.mismatches == tally.protocol_errors == 0 and len(tally.latencies) == 1
    conn.data_received(serve(transport))  # the next one again starts direct, overflows, stays in order
    assert tally.mismatches == tally.protocol_errors == 0 and len(tally.latencies) == 2
