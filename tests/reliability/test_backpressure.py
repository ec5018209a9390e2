"""Scenarios 3 and 4: peers that read slowly or not at all, and sends that go out in pieces.

A server whose peer does not read must stop reading from it (back-pressure, core.EchoSession's
water marks), or its memory grows with whatever the peer pushes. And when the kernel takes only
part of a reply (a small send buffer), the rest must follow, in order, with nothing lost or doubled.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time

import pytest

from tests import support
from tests.reliability.helpers import HashingReader, concurrent, per_model, read_stats, run_all

HIGH_WATER = 64 * 1024
# The issue pushes 32 MiB per client; 16 MiB is still four times what the kernel can hold for a
# peer that does not read (a 4 MiB send buffer and the server's receive buffer), so a server that
# buffered instead of pausing would still grow by far more than the limit, in half the time.
CLIENTS, PUSH = 20, 16 << 20
# Resident memory the server may gain beyond 2 x high-water per client: one recv buffer per peer in
# flight, allocator slack, io_uring's provided-buffer ring (512 KiB by default) once all of it was touched.
SLACK = 8 << 20
BASE = random.Random(3).randbytes(PUSH)
BASE_UPPER_SHA = hashlib.sha256(BASE.upper())


def _tag(i: int) -> bytes:
    return f"<end of client {i:02d}>".encode()


@pytest.mark.scenario(3)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", per_model(
    not_concurrent="; its one-client back-pressure is in tests/conformance"))
def test_clients_that_never_read(serve, model, record_property):
    """Scenario 3. 20 clients with a 4 KiB receive buffer each push 16 MiB without reading.
    Pass: server RSS grows by less than 2 x high-water x clients + 8 MiB while they do not read;
    once they read, each receives exactly `input.upper()` (SHA-256 of the stream)."""
    extra = ("--threads", str(CLIENTS)) if model == "threadpool" else ()
    server = serve(model, "--high-water", "64K", "--low-water", "16K", *extra)
    socks = [server.connect(rcvbuf=4096, timeout=120) for _ in range(CLIENTS)]
    try:
        for sock in socks:
            assert support.request(sock, b"warm up") == b"WARM UP"
        baseline = server.rss()
        results: list = [None] * CLIENTS

        def push(i):
            try:
                socks[i].sendall(BASE)
                socks[i].sendall(_tag(i))
                results[i] = "sent"
            except OSError as exc:
                results[i] = exc

        writers = [threading.Thread(target=push, args=(i,), daemon=True) for i in range(CLIENTS)]
        for writer in writers:
            writer.start()
        # Nobody reads: give the server time to buffer what it should not, sampling its memory.
        peak = baseline
        for _ in range(10):
            time.sleep(0.2)
            peak = max(peak, server.rss())
        growth = peak - baseline
        limit = 2 * HIGH_WATER * CLIENTS + SLACK
        record_property("rss_growth_mib", round(growth / (1 << 20), 1))
        assert growth < limit, f"{model}: RSS grew by {growth} bytes (limit {limit}) for clients that read nothing"
        assert all(writer.is_alive() for writer in writers), \
            f"{model}: a client pushed all {PUSH >> 20} MiB without reading: the server buffered it"
        for sock in socks:  # now read, and faster: the 4 KiB window was only there to stall the server
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        readers = [HashingReader(sock, limit=PUSH + len(_tag(i))) for i, sock in enumerate(socks)]
        for i, reader in enumerate(readers):
            count, digest = reader.result(timeout=240)
            expected = BASE_UPPER_SHA.copy()
            expected.update(_tag(i).upper())
            assert (count, digest) == (PUSH + len(_tag(i)), expected.hexdigest()), f"client {i}"
        for writer in writers:
            writer.join(30)
        assert results == ["sent"] * CLIENTS
    finally:
        for sock in socks:
            sock.close()


PARTIAL_CLIENTS, PARTIAL_SIZE = 25, 1 << 20
# Every accepted socket inherits the listener's send buffer: 4 KiB (the kernel doubles it), so
# each send() takes a few KiB and the rest of a reply must follow in later sends.
SMALL_SNDBUF = """
import socket
from iomodels.serving import toolkit
_open_listener = toolkit.open_listener
def _small_sndbuf(config):
    listener = _open_listener(config)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return listener
toolkit.open_listener = _small_sndbuf
"""


def _random_chunks(client: int) -> tuple[list[bytes], str]:
    rng = random.Random(client)
    data = rng.randbytes(PARTIAL_SIZE)
    chunks, start = [], 0
    while start < len(data):
        size = rng.choice([1, 7, 512, 4096, 65536, 300_000])
        chunks.append(data[start:start + size])
        start += size
    return chunks, hashlib.sha256(data.upper()).hexdigest()


@pytest.mark.scenario(4)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", per_model())
def test_partial_writes_are_byte_exact(serve, model, tmp_path, record_property):
    """Scenario 4. Server send buffer 4 KiB (SO_SNDBUF), 25 clients each send 1 MB in random
    chunks while reading. Pass: the SHA-256 of what each receives is that of upper() of what it sent.
    (The iterative blocking server takes the clients one after another.)"""
    stats_file = tmp_path / "stats.json"
    extra = ("--threads", str(PARTIAL_CLIENTS)) if model == "threadpool" else ()
    server = serve(model, "--stats-file", str(stats_file), *extra, prelude=SMALL_SNDBUF)

    def client(i):
        chunks, expected = _random_chunks(i)
        with server.connect(timeout=120) as sock:
            reader = HashingReader(sock, limit=PARTIAL_SIZE)
            for chunk in chunks:
                sock.sendall(chunk)
            return reader.result(timeout=120) == (PARTIAL_SIZE, expected)

    results = run_all([lambda i=i: client(i) for i in range(PARTIAL_CLIENTS)], concurrently=concurrent(model))
    assert results == [True] * PARTIAL_CLIENTS
    assert server.stop() == 0
    stats = read_stats(stats_file)
    record_property("send_partial", stats["send_partial"])
    record_property("send_eagain", stats["send_eagain"])
