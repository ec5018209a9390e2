"""Scenario 20: `--idle-timeout` against a client that is busy, only slow to read.

Idle means the peer neither sent nor read. A client uploading while it reads slowly fills its
side: the server's output backs up, back-pressure stops the server reading, and then no data
arrives, by the server's own doing. Counting that pause as the client's silence cut clients that
were reading all along (a client uploading 8 MiB at 64 KiB/s was reset after 2.3 s).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests import support
from tests.reliability.helpers import per_model

IDLE = 1.0
DURATION = 3.0  # three idle timeouts
READ_STEP, READ_EVERY = 4096, 0.125  # 32 KiB/s: draining high-water to low-water takes 1.5 s


@pytest.mark.scenario(20)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model())
def test_a_client_uploading_while_reading_slowly_is_not_cut(serve, model):
    """`--idle-timeout 1 --high-water 64K --low-water 16K`; a client with an 8 KiB receive
    buffer uploads as fast as the server takes it and reads 4 KiB every 1/8 s, for 3 s (each
    back-pressure pause lasts longer than the idle timeout). Pass: then it stops, half-closes,
    and reads every reply byte-exact up to EOF: no reset."""
    server = serve(model, "--idle-timeout", str(IDLE), "--high-water", "64K", "--low-water", "16K")
    sock = support.connect(server.address, rcvbuf=8192, timeout=20)
    sent = bytearray()
    stop_sending = threading.Event()
    errors = []

    def upload():
        chunk = b"slow reader " * 100
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            while not stop_sending.is_set():
                sock.sendall(chunk)  # blocks while the server does not read: that is the point
                sent.extend(chunk)
        except OSError as exc:
            errors.append(exc)

    writer = threading.Thread(target=upload, daemon=True)
    writer.start()
    received = bytearray()
    try:
        deadline = time.monotonic() + DURATION
        while time.monotonic() < deadline:
            data = sock.recv(READ_STEP)
            assert data, f"{model}: closed after {len(received)} bytes"
            received += data
            time.sleep(READ_EVERY)
        stop_sending.set()
        # The writer may be blocked in sendall: reading everything lets it finish.
        sock.settimeout(20)
        while writer.is_alive():
            data = sock.recv(1 << 16)
            assert data, f"{model}: closed after {len(received)} bytes"
            received += data
        writer.join(10)
        assert not errors, f"{model}: the upload failed after {len(sent)} bytes: {errors}"
        sock.shutdown(socket.SHUT_WR)
        received += support.recv_until_eof(sock)
    except ConnectionResetError:
        pytest.fail(f"{model}: reset after {len(received)} bytes read, {len(sent)} sent")
    finally:
        sock.close()
    assert bytes(received) == bytes(sent).upper()
