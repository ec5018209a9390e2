"""Lifecycle of the readiness loop: the drain on SIGTERM, the age limit, a bug in one connection.

The last test runs a model in a thread of this process, with a session that fails on a chosen
payload, to show that an exception in one connection aborts that connection only (logged with
its traceback, counted) while the others keep being served.
"""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from iomodels.serving import models, toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.core import EchoSession
from iomodels.serving.models import _readiness
from iomodels.serving.stats import Stats
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


class FragileSession(EchoSession):
    """An EchoSession with a bug: it raises on one payload."""

    def receive_data(self, data):
        if b"boom" in data:
            raise ZeroDivisionError("injected bug")
        return super().receive_data(data)

    def reply_to(self, data):  # the short path's
        if b"boom" in data:
            raise ZeroDivisionError("injected bug")
        return super().reply_to(data)


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_a_bug_in_one_connection_aborts_only_that_one(model, monkeypatch, caplog):
    monkeypatch.setattr(_readiness, "EchoSession", FragileSession)
    config = ServerConfig(model=model, port=0, drain_timeout=0.0)
    listener = toolkit.open_listener(config)
    stats, stop = Stats(), toolkit.Stop(config.drain_timeout)
    stop.watch_listener(listener)
    thread = threading.Thread(target=models.load(model).serve, args=(listener, config, stats, stop))
    try:
        with caplog.at_level(logging.ERROR, logger="iomodels"):
            thread.start()
            address = listener.getsockname()
            with support.connect(address) as healthy, support.connect(address) as victim:
                assert request(healthy, b"fine") == b"FINE"
                victim.sendall(b"boom")
                assert support.is_closed_by_peer(victim)
                assert request(healthy, b"still fine") == b"STILL FINE"
    finally:
        stop.request()
        thread.join(30)
        listener.close()
        stop.close()
    assert not thread.is_alive()
    assert stats.internal_errors == 1
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records)
