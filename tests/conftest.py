"""Fixtures: `serve(model, *flags)` starts a server and guarantees it is stopped, by PID, and clean."""

from __future__ import annotations

import signal

import pytest

from tests import support


@pytest.fixture
def serve():
    """Start servers; at teardown stop each one, and fail if it crashed, leaked or logged a traceback.

    A test that stops a server itself does so through the returned object; teardown then only
    checks what is left. A test that provokes an error on purpose sets `server.allow_traceback`.
    """
    started: list[support.RunningServer] = []

    def start(model: str, *args: str, **kwargs) -> support.RunningServer:
        reason = support.skip_reason(model)
        if reason:
            pytest.skip(f"{model} cannot run here: {reason}")
        server = support.start_server(model, *args, **kwargs)
        server.allow_traceback = False
        started.append(server)
        return server

    yield start
    problems = []
    for server in started:
        try:
            status = server.stop(signal.SIGTERM)
        except support.ServerFailed as exc:
            problems.append(str(exc))
            continue
        if status != 0:
            problems.append(f"{server.model} server exited with status {status}: {server.stderr()[-2000:]}")
        logged = server.stderr()
        if ("Traceback" in logged or " ERROR " in logged) and not server.allow_traceback:
            problems.append(f"{server.model} server logged an error:\n{logged[-4000:]}")
    assert not problems, "\n".join(problems)
