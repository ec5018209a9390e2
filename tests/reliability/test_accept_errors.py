"""Scenario 2, the accept errno matrix, with a fake listener: no sockets, no timing.
Pass: ECONNABORTED, EPROTO, EPERM, ECONNRESET skipped; EMFILE, ENFILE, ENOBUFS, ENOMEM back off;
EBADF, EINVAL (ENOTSOCK) propagate.

What each failure of accept() must lead to (see iomodels/errnos.py for what other servers do):
skip the one connection, pause accepting (out of a resource), or propagate (our bug).
"""

from __future__ import annotations

import errno
import socket

import pytest

from iomodels.serving import toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.models import _blocking
from iomodels.serving.stats import Stats

SKIPPED = [errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET]
BACK_OFF = [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM]
BUGS = [errno.EBADF, errno.EINVAL, errno.ENOTSOCK]

# The blocking family shares this accept loop; test_accept_errors_models.py runs the other models.
pytestmark = pytest.mark.scenario(2, models=["blocking", "threaded", "forking", "threadpool"])


class FakeListener:
    """accept() fails with the given errnos in turn, then yields one real connection, then stops."""

    def __init__(self, failures, stop: toolkit.Stop):
        self.failures = list(failures)
        self.stop = stop
        self.served = []

    def accept(self):
        if self.failures:
            code = self.failures.pop(0)
            raise OSError(code, "injected")
        if not self.served:
            ours, theirs = socket.socketpair()
            self.served.append(theirs)
            return ours, ("127.0.0.1", 1)
        self.stop.request()
        raise OSError(errno.EINVAL, "listener shut down")


class RecordingStop(toolkit.Stop):
    def __init__(self):
        super().__init__(drain_timeout=0.0)
        self.sleeps = []

    def wait(self, timeout=None):
        self.sleeps.append(timeout)  # record the back-off instead of sleeping
        return self.requested


def run_accept_loop(failures):
    stats, stop = Stats(), RecordingStop()
    listener = FakeListener(failures, stop)
    handled = []
    try:
        _blocking.accept_forever(listener, ServerConfig(), stats, stop, lambda conn: (handled.append(conn), conn.close()))
    finally:
        stop.close()
        for sock in listener.served:
            sock.close()
    return stats, stop, handled


@pytest.mark.parametrize("code", SKIPPED)
def test_connection_level_errors_are_skipped_without_pause(code):
    """Scenario 2. Pass: ECONNABORTED/EPROTO/EPERM/ECONNRESET are skipped, no pause, next client served."""
    stats, stop, handled = run_accept_loop([code, code, code])
    assert len(handled) == 1  # the next connection is served
    assert stats.accept_errors == 3 and stats.accept_backoffs == 0
    assert stop.sleeps == []


@pytest.mark.parametrize("code", BACK_OFF)
def test_resource_errors_back_off_with_a_growing_pause(code):
    """Scenario 2. Pass: EMFILE/ENFILE/ENOBUFS/ENOMEM pause accepting, the pause grows to at most
    MAX_DELAY, and accepting resumes once the resource is back."""
    stats, stop, handled = run_accept_loop([code] * 8)
    assert len(handled) == 1  # and accepting resumes once the resource is back
    assert stats.accept_backoffs == 8
    assert stop.sleeps == sorted(stop.sleeps) and stop.sleeps[0] > 0
    assert stop.sleeps[-1] <= toolkit.AcceptBackoff.MAX_DELAY


@pytest.mark.parametrize("code", BUGS)
def test_errors_that_mean_our_bug_propagate(code):
    """Scenario 2. Pass: EBADF/EINVAL/ENOTSOCK propagate out of the accept loop."""
    with pytest.raises(OSError) as raised:
        run_accept_loop([code])
    assert raised.value.errno == code


def test_one_log_line_per_episode(caplog):
    """Scenario 2 (and 1). Pass: one warning per back-off episode, not one per failed accept."""
    backoff = toolkit.AcceptBackoff(Stats())
    with caplog.at_level("INFO", logger="iomodels"):
        for _ in range(50):
            backoff.failed(OSError(errno.EMFILE, "Too many open files"))
        backoff.succeeded()
        backoff.failed(OSError(errno.EMFILE, "Too many open files"))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # one per episode, not one per failure
