"""Scenario 15: hypothesis plays a peer: random bytes, chunkings, pauses, half-closes and resets.

Each example is one connection to a server shared by all examples of a model. Whatever the peer
does, what came back before it stopped must be exactly the uppercased prefix of what it sent, and
after a half-close, all of it. One server living through every example also checks that no
example leaves it broken for the next.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import support
from tests.reliability.helpers import per_model, reset, serves

EXAMPLES = 50

# Mostly letters (the bytes that change), with the rest of the byte values mixed in.
payloads = st.builds(
    lambda seed, size, letters: bytes(
        rng.choice(b"abcxyzABC") if rng.random() < letters else rng.randrange(256)
        for rng in [random.Random(seed)] for _ in range(size)),
    st.integers(0, 2**32), st.integers(1, 20_000), st.floats(0, 1))
actions = st.lists(st.one_of(
    st.tuples(st.just("send"), payloads, st.sampled_from([1, 3, 100, 1460, 4096, 65536])),
    st.tuples(st.just("pause"), st.floats(0, 0.02)),
), min_size=1, max_size=12)
endings = st.sampled_from(["half-close", "reset", "close-after-reply", "close-at-once"])


class Reader(threading.Thread):
    """Collects everything the server sends until EOF, a reset, or `stop`."""

    def __init__(self, sock: socket.socket):
        super().__init__(daemon=True)
        self.sock, self.data, self.stop, self.eof = sock, bytearray(), threading.Event(), False
        sock.settimeout(0.05)
        self.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                self.eof = True
                return
            self.data += chunk


def play(server, steps, ending) -> None:
    sock = server.connect(timeout=30)
    reader = Reader(sock)
    sent = bytearray()
    try:
        for step in steps:
            if step[0] == "pause":
                time.sleep(step[1])
                continue
            _, data, chunk = step
            for start in range(0, len(data), chunk):
                sock.sendall(data[start:start + chunk])
            sent += data
        expected = bytes(sent).upper()
        if ending == "half-close":
            sock.shutdown(socket.SHUT_WR)
            reader.join(30)
            assert reader.eof, "no EOF after the half-close"
            assert reader.data == expected
            return
        if ending == "close-after-reply":
            assert support.wait_until(lambda: len(reader.data) >= len(expected), timeout=30)
        # Everything acknowledged so far (received) must be an exact prefix of the reply.
        reader.stop.set()
        reader.join(5)
        assert expected.startswith(reader.data), f"{len(reader.data)} bytes received are not a prefix"
        if ending == "close-after-reply":
            assert reader.data == expected
    finally:
        reader.stop.set()
        reader.join(5)
        if ending == "reset":
            reset(sock)
        else:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.scenario(15)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", per_model())
def test_random_peers_get_exact_replies(serve, model):
    """Scenario 15. 50 hypothesis examples per model: random payloads, chunk sizes, pauses, and an
    ending (half-close, reset, close with or without the reply). Pass: what arrived is exactly the
    uppercased prefix of what was sent (all of it after a half-close), and the server, shared by
    all examples, still serves and logs nothing wrong."""
    server = serve(model, "--high-water", "64K", "--low-water", "16K")

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(steps=actions, ending=endings)
    def peer(steps, ending):
        play(server, steps, ending)

    peer()
    assert support.wait_until(lambda: serves(server), timeout=20)
