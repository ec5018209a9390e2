"""Scenario 11: connections whose descriptor number is 1024 or more.

select() takes descriptors below FD_SETSIZE (1024) only: the select model must refuse such a
connection cleanly and serve again once lower descriptors are free; every other model has no such
limit and must serve them normally. Rather than 1000 clients, the server starts with 1000
descriptors already open (a test prelude), so a few dozen connections cross the line.
"""

from __future__ import annotations

import re

import pytest

from tests import support
from tests.reliability.helpers import per_model, read_stats

CLIENTS = 40
# Descriptors 3..1002 taken before the server starts: its own (listener, stop pipe, epoll...)
# and the first ~15 connections stay below 1024, the rest of the 40 land above it.
FILL_DESCRIPTORS = "import os\n_filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1000)]"


def _request_or_refused(server, message: bytes):
    """(socket, True) if served; (None, False) if the server closed or reset the connection."""
    try:
        sock = server.connect(timeout=20)
        if support.request(sock, message) == message.upper():
            return sock, True
        sock.close()
    except (OSError, AssertionError):
        pass
    return None, False


@pytest.mark.scenario(11)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("model", per_model(
    not_concurrent=": it holds one connection, so it never reaches descriptor 1024"))
def test_descriptors_past_1024(serve, model, tmp_path, record_property):
    """Scenario 11. The server starts with 1000 descriptors open; 40 clients connect and stay.
    Pass: select serves those below 1024 and refuses the rest cleanly (counted, one warning per
    burst, no traceback), then serves a new client once the others left; every other model serves
    all 40."""
    stats_file = tmp_path / "stats.json"
    extra = ("--threads", str(CLIENTS + 4)) if model == "threadpool" else ()
    server = serve(model, "--stats-file", str(stats_file), *extra, prelude=FILL_DESCRIPTORS)
    held = []
    try:
        outcomes = []
        for i in range(CLIENTS):
            sock, served = _request_or_refused(server, f"client {i}".encode())
            outcomes.append(served)
            if sock is not None:
                held.append(sock)
        assert server.proc.poll() is None, server.stderr()[-3000:]
        record_property("served_of_40", sum(outcomes))
        if model == "select":
            assert any(outcomes) and not all(outcomes), outcomes
            assert outcomes == sorted(outcomes, reverse=True), "served again before any descriptor was freed"
        else:
            assert all(outcomes), f"{model} refused {outcomes.count(False)} clients"
    finally:
        for sock in held:
            sock.close()
    after = []  # a newcomer may still be refused until the server has closed the others' sockets

    def newcomer_served() -> bool:
        after.append(_request_or_refused(server, b"after")[1])
        return after[-1]

    assert support.wait_until(newcomer_served, timeout=20)
    assert server.stop() == 0
    stats = read_stats(stats_file)
    warnings = len(re.findall(r"does not fit", server.stderr()))
    if model == "select":
        refused = outcomes.count(False) + after.count(False)
        assert stats["rejected_fd_too_high"] == refused and warnings == 1, (stats, warnings)
    assert stats["internal_errors"] == 0
