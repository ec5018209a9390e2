"""A bug in one connection aborts that connection only: every model, with a faulty session handed
to it in-process through the `new_session` seam of serve().

The model runs in a thread of this test process (models whose serve() cannot: ModelInfo says
`runs_in_thread=False`; the real-process variant in tests/reliability/test_injected_failures.py
covers them). Its session raises on one payload; the connection that sent it is closed, the error
is logged with its traceback and counted once, and another connection keeps being served.
"""

from __future__ import annotations

import logging
import threading

import pytest

from iomodels.serving import models, toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.core import EchoSession
from iomodels.serving.stats import Stats
from tests import support
from tests.support import request

pytestmark = pytest.mark.timeout(120)


class FragileSession(EchoSession):
    """An EchoSession with a bug: it raises on one payload, on whichever path the data takes."""

    def receive_data(self, data):
        if b"boom" in data:
            raise ZeroDivisionError("injected bug")
        return super().receive_data(data)

    def reply_to(self, data):  # the short path of the readiness and blocking models
        if b"boom" in data:
            raise ZeroDivisionError("injected bug")
        return super().reply_to(data)


@pytest.mark.parametrize("model, flags", support.variants(support.models_where(runs_in_thread=True, concurrent=True)))
def test_a_bug_in_one_connection_aborts_only_that_one(model, flags, caplog):
    if reason := models.unavailable_reason(model):
        pytest.skip(f"{model} cannot run here: {reason}")
    options = dict(zip((flag.removeprefix("--").replace("-", "_") for flag in flags[::2]), flags[1::2]))
    config = ServerConfig(model=model, port=0, drain_timeout=0.0, **options)
    listener = toolkit.open_listener(config)
    stats, stop = Stats(), toolkit.Stop(config.drain_timeout)
    stop.watch_listener(listener)

    def fragile() -> EchoSession:
        return FragileSession(config.high_water, config.low_water)

    thread = threading.Thread(target=models.load(model).serve, args=(listener, config, stats, stop, fragile))
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
