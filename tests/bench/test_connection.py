"""The connection protocol fed by hand: however replies are cut or glued, verification holds."""

from __future__ import annotations

import contextlib
import random
import socket

import pytest

from iomodels.bench.connection import Connection, Tally
from iomodels.bench.payload import Messages, Size, Stream


class Wire:
    """One end of a non-blocking socketpair is the connection's socket; the test reads the other
    end, as the server would. It also stands in for the worker's Poller: it notes whether the
    connection waits to write, and `take` lets it write what was pending, as the Poller does when
    the socket drains."""

    def __init__(self):
        self.ours, self.peer = socket.socketpair()
        self.ours.setblocking(False)
        self.peer.setblocking(False)
        self.connection = None
        self.waiting = False  # the connection holds bytes the socket did not take
        self.forgotten = False  # the connection closed its socket

    def watch_writes(self, fd, on):
        self.waiting = on

    def forget(self, fd):
        self.forgotten = True

    def take(self) -> bytes:
        """Everything sent so far, in wire order, as the server would read it."""
        data = bytearray()
        while True:
            with contextlib.suppress(BlockingIOError):
                while chunk := self.peer.recv(1 << 20):
                    data += chunk
            if not self.waiting:
                return bytes(data)
            self.connection.writable()

    def close(self):
        self.ours.close()
        self.peer.close()


@pytest.fixture
def wires():
    made: list[Wire] = []
    yield made
    for wire in made:
        wire.close()


def connection(wires, depth: int, size=Size(5, 40), refill=True, start=True):
    tally = Tally()
    conn = Connection(tally, Stream(Messages(size, seed=7), max(depth, 1) * size.high), first=3, refill=refill)
    wire = Wire()
    wires.append(wire)
    wire.connection = conn
    conn.attached(wire.ours, wire)
    if refill and start:
        conn.start(depth)
    return conn, tally, wire


def recorded(tally: Tally) -> int:
    """Requests timed since the last flush."""
    return len(tally.latencies) + sum(tally.batch_counts)


def serve(wire: Wire, reply=bytes.upper) -> bytes:
    """Everything the client sent so far, answered."""
    return reply(wire.take())


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_replies_cut_anywhere_are_all_verified(wires, depth, cut):
    conn, tally, wire = connection(wires, depth)
    received = 0
    for _ in range(20):
        reply = serve(wire)
        for i in range(0, len(reply), cut):
            conn.data_received(reply[i:i + cut])
        received += len(reply)
    assert tally.new_mismatches == tally.protocol_errors == 0
    assert recorded(tally) >= 20 and conn.nbytes == received


def test_a_wrong_byte_is_one_mismatch_and_the_stream_stays_in_step(wires):
    conn, tally, wire = connection(wires, 1, size=Size(64, 64))
    reply = bytearray(serve(wire))
    reply[10] ^= 0x20
    conn.data_received(bytes(reply))
    for _ in range(5):
        conn.data_received(serve(wire))
    assert tally.new_mismatches == 1 and recorded(tally) == 6
    first = tally.first_mismatch
    assert (first["request"], first["byte"]) == (1, 10) and first["got"] == first["expected"] ^ 0x20


def test_bytes_beyond_what_was_sent_are_a_protocol_error(wires):
    conn, tally, wire = connection(wires, 1)
    conn.data_received(serve(wire) + b"!")
    assert tally.protocol_errors == 1 and wire.forgotten and not conn.alive and conn.closing


def test_open_loop_sends_on_demand_and_times_from_the_intended_instant(wires):
    conn, tally, wire = connection(wires, 0, size=Size(8, 8), refill=False)
    for intended in (1, 2, 3):
        conn.send(intended)
    conn.data_received(serve(wire))
    assert recorded(tally) == 3 and wire.take() == b""  # no refill in open loop
    assert tally.latencies[0] > tally.latencies[2]  # the earliest intended is the longest wait


def test_what_the_socket_does_not_take_waits_and_goes_out_in_order(wires):
    conn, tally, wire = connection(wires, 1, size=Size(1 << 20, 1 << 20))
    assert not conn.direct and conn.pending and wire.waiting  # 1 MiB does not fit a socketpair's buffer
    conn.data_received(serve(wire))
    assert tally.new_mismatches == tally.protocol_errors == 0 and recorded(tally) == 1
    conn.data_received(serve(wire))  # the next one again starts direct, overflows, stays in order
    assert tally.new_mismatches == tally.protocol_errors == 0 and recorded(tally) == 2


@pytest.mark.parametrize("depth", [2, 8, 32])
def test_a_batch_of_replies_in_one_receive_is_timed_as_one_batch(wires, depth):
    conn, tally, wire = connection(wires, depth, size=Size(64, 64))
    conn.data_received(serve(wire))  # all `depth` replies at once
    assert recorded(tally) == depth and list(tally.batch_counts) == [depth] and not tally.latencies
    assert len(wire.take()) == depth * 64  # and the same number of requests went out, in one write


def test_a_plain_echo_server_is_counted_once_per_reply_and_named(wires):
    conn, tally, wire = connection(wires, 4, size=Size(16, 16))
    for _ in range(10):
        reply = serve(wire, reply=lambda data: data)  # echo, not uppercased
        for i in range(0, len(reply), 5):  # cut across reply boundaries
            conn.data_received(reply[i:i + 5])
    assert tally.new_mismatches == recorded(tally) == 40
    assert tally.first_mismatch["request"] == 1 and tally.first_mismatch["got"] != tally.first_mismatch["expected"]


def test_a_wrong_start_and_right_end_of_one_reply_count_once(wires):
    conn, tally, wire = connection(wires, 1, size=Size(64, 64))
    reply = bytearray(serve(wire))
    reply[0] ^= 0x20
    conn.data_received(bytes(reply[:10]))
    conn.data_received(bytes(reply[10:]))
    assert tally.new_mismatches == 1 and recorded(tally) == 1


def test_a_server_that_speaks_first_is_a_protocol_error_and_start_sends_nothing(wires):
    conn, tally, wire = connection(wires, 4, start=False)
    conn.data_received(b"220 welcome\r\n")
    assert tally.protocol_errors == 1 and wire.forgotten and not conn.alive and conn.closing
    assert "before it was sent anything" in next(iter(tally.protocol_reasons))
    conn.start(4)  # the worker starts every connection: this one must stay silent, not raise
    assert wire.take() == b""


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
def test_random_cuts_and_corruptions_count_each_wrong_reply_exactly_once(wires, seed):
    rng = random.Random(seed)
    depth, size = rng.choice([1, 3, 8]), rng.choice([Size(8, 8), Size(1, 50)])
    conn, tally, wire = connection(wires, depth, size=size)
    wrong = 0
    for _ in range(30):
        sent_from = conn.done  # the replies answered in this turn are conn.done .. conn.sent
        replies = [bytearray(conn.stream.window(conn.stream.expected, conn.stream.offset(i),
                                                conn.stream.offset(i + 1) - conn.stream.offset(i)))
                   for i in range(sent_from, conn.sent)]
        wire.take()
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
