"""Scenario 22: at the drain deadline, a connection with unanswered input is reset, not closed.

A FIN after a cut reply looks like a reply that ended normally: a client cannot tell. Several
models used to drop what they had read and not answered and then close with a FIN. A reset
(SO_LINGER 0) says "cut off" to the peer; every model must do it alike.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests import support
from tests.reliability.helpers import per_model
from tests.reliability.test_backpressure import SMALL_SNDBUF

DRAIN = 1.0
REQUEST = 48 * 1024  # read whole by every model, answered only in part: the peer does not read


@pytest.mark.scenario(22)
@pytest.mark.timeout(90)
@pytest.mark.parametrize("model", per_model())
def test_unanswered_input_at_the_drain_deadline_is_reset(model):
    """A client with a 4 KiB receive buffer sends 48 KiB and reads nothing; the server (4 KiB send
    buffers) reads it all and can deliver only part of the reply. SIGTERM, `--drain-timeout 1`.
    Pass: once the server has exited, the client reads the part of the reply that reached it,
    then a reset (ECONNRESET), never a clean end of stream (EOF) after a short reply."""
    server = support.start_server(model, "--drain-timeout", str(DRAIN), prelude=SMALL_SNDBUF)
    try:
        sock = support.connect(server.address, rcvbuf=4096, timeout=20)
        sock.sendall(b"u" * REQUEST)
        sent = REQUEST
        time.sleep(0.5)  # the server reads it all (bounded: what a loaded box needs, not asserted)
        server.process.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=DRAIN + 20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{model} still running {DRAIN + 20} s after SIGTERM")
        received, ending = 0, None
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 16):
                received += len(chunk)
            ending = "EOF"
        except ConnectionResetError:
            ending = "reset"
        sock.close()
        assert received < sent, "the test needs a reply cut by the deadline"
        assert ending == "reset", f"{model}: {received} of {sent} bytes answered, then a clean EOF"
    finally:
        server.stop(check=False)
