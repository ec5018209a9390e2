"""Scenario 2, the accept errno matrix, through each model's own accept path.

test_accept_errors.py checks the blocking family's shared loop. Here the readiness models,
asyncio and uvloop run in this process on a real listener whose `accept()` first fails with the chosen errno
(they call `listener.accept()` from Python, so the fault goes exactly where the kernel's would),
and io_uring's completion handler gets an accept completion carrying the negative errno.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading

import pytest

from iomodels.serving import models, toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.stats import Stats
from tests import support
from tests.reliability.helpers import per_model
from tests.reliability.test_accept_errors import BACK_OFF, BUGS, SKIPPED

pytestmark = [pytest.mark.scenario(2), pytest.mark.timeout(60)]

BLOCKING_FAMILY = {name: "the blocking family shares one accept loop: see test_accept_errors.py"
                   for name in support.models_where(kind="blocking")}
PYTHON_ACCEPT = per_model({
    **BLOCKING_FAMILY,
    "io_uring": "the kernel accepts: see test_io_uring_accept_completion_errors"})
FAILURES = 2  # per errno: enough to see a pause grow, short enough for asyncio's 1 s pauses


class FaultyListener(socket.socket):
    """A real listening socket whose next accept() calls fail with the given errnos."""

    def __init__(self, failures, **kwargs):
        super().__init__(**kwargs)
        self.failures = list(failures)

    def accept(self):
        if self.failures:
            raise OSError(self.failures.pop(0), "injected by the test")
        return super().accept()


def run_model(model: str, failures, client_timeout: float = 10.0) -> tuple[Stats, list, BaseException | None]:
    """Serve with `model` in this thread until one client got its reply (or gave up)."""
    real = socket.create_server(("127.0.0.1", 0))
    address = real.getsockname()
    listener = FaultyListener(failures, fileno=real.detach())
    stats, stop = Stats(), toolkit.Stop(drain_timeout=1.0)
    stop.watch_listener(listener)
    replies: list = []

    def client():
        # Signals belong to the serving (main) thread: sigio and the stop handlers rely on it.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            with support.connect(address, timeout=client_timeout) as sock:
                replies.append(support.request(sock, b"hello"))
        except (OSError, AssertionError) as exc:
            replies.append(exc)
        finally:
            stop.request()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    error = None
    try:
        config = ServerConfig(model=model, drain_timeout=1.0)
        models.load(model).serve(listener, config, stats, stop, toolkit.session_factory(config))
    except OSError as exc:
        error = exc
    finally:
        listener.close()  # a client still queued (serve() raised) is reset, and gives up
        thread.join(15)
        stop.close()
    return stats, replies, error


@pytest.mark.parametrize("model", PYTHON_ACCEPT)
@pytest.mark.parametrize("code", SKIPPED, ids=errno.errorcode.get)
def test_connection_level_errors_are_skipped(model, code, caplog):
    """Scenario 2. Pass: accept() failing with ECONNABORTED/EPROTO/EPERM/ECONNRESET is skipped:
    no pause, no error logged, and the next client is served."""
    with caplog.at_level(logging.DEBUG):
        stats, replies, error = run_model(model, [code] * FAILURES)
    assert error is None and replies == [b"HELLO"]
    assert stats.accept_backoffs == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize("model", PYTHON_ACCEPT)
@pytest.mark.parametrize("code", BACK_OFF, ids=errno.errorcode.get)
def test_resource_errors_back_off(model, code, caplog):
    """Scenario 2. Pass: accept() failing with EMFILE/ENFILE/ENOBUFS/ENOMEM pauses accepting
    (counted as back-offs), warns once for the episode, and the client is served afterwards."""
    with caplog.at_level(logging.INFO):
        stats, replies, error = run_model(model, [code] * FAILURES)
    assert error is None and replies == [b"HELLO"]
    assert stats.accept_backoffs == FAILURES
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("model", PYTHON_ACCEPT)
@pytest.mark.parametrize("code", BUGS, ids=errno.errorcode.get)
def test_errors_that_mean_a_bug_propagate(model, code, caplog):
    """Scenario 2. Pass: EBADF/EINVAL/ENOTSOCK from accept() are not swallowed: they propagate out
    of serve(), or (an event loop, which catches everything its callbacks raise) reach its
    exception handler and are logged as errors with their traceback."""
    with caplog.at_level(logging.INFO):
        # The client is never served if accepting stopped for good: no need to wait long.
        stats, replies, error = run_model(model, [code], client_timeout=2.0)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info
              and getattr(r.exc_info[1], "errno", None) == code]
    assert (error is not None and error.errno == code) or logged, caplog.text


class _FakeCompletion:
    def __init__(self):
        self.res, self.flags = 0, 0


class _FakeRing:
    """Records the accepts the proactor arms; completions are delivered by the test."""

    def __init__(self):
        self.armed: list[_FakeCompletion] = []

    def accept(self, fd, multishot, on_done):
        self.armed.append(_FakeCompletion())
        return self.armed[-1]


@pytest.mark.scenario(2, models=["io_uring"])
@pytest.mark.parametrize("code", SKIPPED + BACK_OFF + BUGS, ids=errno.errorcode.get)
def test_io_uring_accept_completion_errors(code):
    """Scenario 2 for io_uring. Pass: an accept completion with -ECONNABORTED/-EPROTO/-EPERM/
    -ECONNRESET re-arms the accept at once; with -EMFILE/-ENFILE/-ENOBUFS/-ENOMEM it is re-armed
    only after a pause (a timer); with -EBADF/-EINVAL/-ENOTSOCK it propagates."""
    if models.unavailable_reason("io_uring"):
        pytest.skip(f"io_uring cannot run here: {models.unavailable_reason('io_uring')}")
    from iomodels.serving.models import io_uring

    ring, stats, stop = _FakeRing(), Stats(), toolkit.Stop(drain_timeout=1.0)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        config = ServerConfig(uring_mode="oneshot")
        proactor = io_uring.Proactor(ring, listener, config, stats, stop, toolkit.session_factory(config))
        proactor.arm_accept()
        completion = ring.armed[-1]
        completion.res = -code
        if code in BUGS:
            with pytest.raises(OSError) as raised:
                proactor.accepted(completion)
            assert raised.value.errno == code
        elif code in SKIPPED:
            proactor.accepted(completion)
            assert len(ring.armed) == 2 and not proactor.timers  # re-armed at once
        else:
            proactor.accepted(completion)
            assert len(ring.armed) == 1 and proactor.timers  # re-armed by a timer, later
            assert stats.accept_backoffs == 1
    finally:
        listener.close()
        stop.close()
