"""The connection protocol fed by hand: however replies are cut or glued, verification holds."""

from __future__ import annotations

import contextlib
import random
import socket

import pytest

from iomodels.bench.connection import Connection, Tally
from iomodels.bench.payload import Messages, Size, Stream


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


def connection(transports, depth: int, size=Size(5, 40), refill=True, start=True):
    tally = Tally()
    conn = Connection(tally, Stream(Messages(size, seed=7), max(depth, 1) * size.high), first=3, refill=refill)
    transport = FakeTransport()
    transports.append(transport)
    conn.connection_made(transport)
    if refill and start:
        conn.start(depth)
    return conn, tally, transport


def recorded(tally: Tally) -> int:
    """Requests timed since the last flush."""
    return len(tally.latencies) + sum(tally.batch_counts)


def serve(transport: FakeTransport, reply=bytes.upper) -> bytes:
    """Everything the client sent so far, answered."""
    return reply(transport.take())


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_replies_cut_anywhere_are_all_verified(transports, depth, cut):
    conn, tally, transport = connection(transports, depth)
    received = 0
    for _ in range(20):
        reply = serve(transport)
        for i in range(0, len(reply), cut):
            conn.data_received(reply[i:i + cut])
        received += len(reply)
    assert tally.new_mismatches == tally.protocol_errors == 0
    assert recorded(tally) >= 20 and conn.nbytes == received


def test_a_wrong_byte_is_one_mismatch_and_the_stream_stays_in_step(transports):
    conn, tally, transport = connection(transports, 1, size=Size(64, 64))
    reply = bytearray(serve(transport))
    reply[10] ^= 0x20
    conn.data_received(bytes(reply))
    for _ in range(5):
        conn.data_received(serve(transport))
    assert tally.new_mismatches == 1 and recorded(tally) == 6
    first = tally.first_mismatch
    assert (first["request"], first["byte"]) == (1, 10) and first["got"] == first["expected"] ^ 0x20


def test_bytes_beyond_what_was_sent_are_a_protocol_error(transports):
    conn, tally, transport = connection(transports, 1)
    conn.data_received(serve(transport) + b"!")
    assert tally.protocol_errors == 1 and transport.aborted and conn.closing


def test_open_loop_sends_on_demand_and_times_from_the_intended_instant(transports):
    conn, tally, transport = connection(transports, 0, size=Size(8, 8), refill=False)
    for intended in (1, 2, 3):
        conn.send(intended)
    conn.data_received(serve(transport))
    assert recorded(tally) == 3 and transport.take() == b""  # no refill in open loop
    assert tally.latencies[0] > tally.latencies[2]  # the earliest intended is the longest wait


def test_what_the_socket_does_not_take_goes_through_the_transport_in_order(transports):
    conn, tally, transport = connection(transports, 1, size=Size(1 << 20, 1 << 20))
    assert not conn.direct and transport.buffered  # 1 MiB does not fit a socketpair's buffer
    conn.data_received(serve(transport))
    assert tally.new_mismatches == tally.protocol_errors == 0 and recorded(tally) == 1
    conn.data_received(serve(transport))  # the next one again starts direct, overflows, stays in order
    assert tally.new_mismatches == tally.protocol_errors == 0 and recorded(tally) == 2


@pytest.mark.parametrize("depth", [2, 8, 32])
def test_a_batch_of_replies_in_one_receive_is_timed_as_one_batch(transports, depth):
    conn, tally, transport = connection(transports, depth, size=Size(64, 64))
    conn.data_received(serve(transport))  # all `depth` replies at once
    assert recorded(tally) == depth and list(tally.batch_counts) == [depth] and not tally.latencies
    assert len(transport.take()) == depth * 64  # and the same number of requests went out, in one write


def test_a_plain_echo_server_is_counted_once_per_reply_and_named(transports):
    conn, tally, transport = connection(transports, 4, size=Size(16, 16))
    for _ in range(10):
        reply = serve(transport, reply=lambda data: data)  # echo, not uppercased
        for i in range(0, len(reply), 5):  # cut across reply boundaries
            conn.data_received(reply[i:i + 5])
    assert tally.new_mismatches == recorded(tally) == 40
    assert tally.first_mismatch["request"] == 1 and tally.first_mismatch["got"] != tally.first_mismatch["expected"]


def test_a_wrong_start_and_right_end_of_one_reply_count_once(transports):
    conn, tally, transport = connection(transports, 1, size=Size(64, 64))
    reply = bytearray(serve(transport))
    reply[0] ^= 0x20
    conn.data_received(bytes(reply[:10]))
    conn.data_received(bytes(reply[10:]))
    assert tally.new_mismatches == 1 and recorded(tally) == 1


def test_a_server_that_speaks_first_is_a_protocol_error_and_start_sends_nothing(transports):
    conn, tally, transport = connection(transports, 4, start=False)
    conn.data_received(b"220 welcome\r\n")
    assert tally.protocol_errors == 1 and transport.aborted and conn.closing
    assert "before it was sent anything" in next(iter(tally.protocol_reasons))
    conn.start(4)  # the worker starts every connection: this one must stay silent, not raise
    assert transport.take() == b""


def test_flush_files_mismatches_with_their_requests():
    tally = Tally()
    tally.latencies.extend([1000, 2000])
    tally.new_mismatches = 2
    tally.flush(measuring=False)
    tally.batch_latencies.append(5000)
    tally.batch_counts.append(3)
    tally.new_mismatches = 3
    tally.flush(measuring=True)
    assert (tally.warmup_requests, tally.warmup_mismatches) == (2, 2)
    assert (tally.histogram.count, tally.mismatches) == (3, 3)


@pytest.mark.parametrize("seed", range(6))
def test_random_cuts_and_corruptions_count_each_wrong_reply_exactly_once(transports, seed):
    rng = random.Random(seed)
    depth, size = rng.choice([1, 3, 8]), rng.choice([Size(8, 8), Size(1, 50)])
    conn, tally, transport = connection(transports, depth, size=size)
    wrong = 0
    for _ in range(30):
        sent_from = conn.done  # the replies answered in this turn are conn.done .. conn.sent
        replies = [bytearray(conn.stream.window(conn.stream.expected, conn.stream.offset(i),
                                                conn.stream.offset(i + 1) - conn.stream.offset(i)))
                   for i in range(sent_from, conn.sent)]
        transport.take()
        for reply in replies:
            if rng.random() < 0.3:
                reply[rng.randrange(len(reply))] ^= 0x01
                wrong += 1
        data = b"".join(replies)
        at = 0
        while at < len(data):
            step = rng.randint(1, 40)
            conn.data_received(data[at:at + step])
            at += step
    assert tally.new_mismatches == wrong and tally.protocol_errors == 0
    assert recorded(tally) == 30 * depth
