"""Lifecycle of the readiness loop: the drain on SIGTERM, the age limit.

(A bug in one connection: tests/behaviour/test_faulty_session.py, over every model.)
"""

from __future__ import annotations

import signal

import pytest

from tests import support
from tests.readiness.helpers import READINESS_MODELS
from tests.support import request

pytestmark = pytest.mark.timeout(120)


def refused(running) -> bool:
    try:
        running.connect(timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_sigterm_drains_open_connections_then_exits(serve, model):
    running = serve(model, "--drain-timeout", "60")
    sock = running.connect()
    assert request(sock, b"before") == b"BEFORE"
    running.proc.send_signal(signal.SIGTERM)
    assert support.wait_until(lambda: refused(running), timeout=10)  # new clients are refused...
    assert request(sock, b"during the drain") == b"DURING THE DRAIN"  # ...open ones still served
    sock.close()
    # The last connection closed: the server leaves long before the 60 s drain timeout.
    assert running.proc.wait(timeout=20) == 0


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_max_connection_age_closes_even_a_busy_connection(serve, model):
    running = serve(model, "--max-connection-age", "0.5")
    with running.connect() as sock:
        def closed_while_talking():
            try:
                return request(sock, b"busy") != b"BUSY"
            except (OSError, AssertionError):
                return True
        assert support.wait_until(closed_while_talking, timeout=15, interval=0.05)
