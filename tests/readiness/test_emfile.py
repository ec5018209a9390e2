"""Out of descriptors (EMFILE) on accept: pause, log once, resume; never spin.

With RLIMIT_NOFILE = 64 and 100 clients connecting, accept() fails for every client beyond the
limit while they stay queued: a server that retries at once makes thousands of failed calls a
second. Ours pause with a growing delay, so over the whole test (more than two seconds at the
limit) the failed calls stay in the tens; and once clients leave, a newcomer is served.
"""

from __future__ import annotations

import time

import pytest

from tests.readiness.helpers import READINESS_MODELS, read_final_counters
from tests.support import request

pytestmark = pytest.mark.timeout(120)

NOFILE = 64
CLIENTS = 100
KEEP = 30  # accepted first (the accept queue is FIFO), so surely inside the limit


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_emfile_backs_off_then_serves_again(serve, model, tmp_path):
    stats_file = str(tmp_path / "stats.json")
    server = serve(model, "--stats-file", stats_file, nofile=NOFILE)
    clients = [server.connect() for _ in range(CLIENTS)]  # the kernel completes every handshake
    try:
        assert request(clients[0], b"at the limit") == b"AT THE LIMIT"
        time.sleep(2.0)  # hold the server at the limit: a spinning accept loop would fail ~1e5 times
        assert request(clients[KEEP - 1], b"still at it") == b"STILL AT IT"
        for sock in clients[KEEP:]:
            sock.close()
        with server.connect(timeout=20) as newcomer:
            assert request(newcomer, b"newcomer") == b"NEWCOMER"
    finally:
        for sock in clients:
            sock.close()
    assert server.stop() == 0
    counters = read_final_counters(stats_file)
    assert counters["accept_backoffs"] >= 1, "the descriptor limit was never reached"
    assert counters["accept_errors"] < 100, f"accept() failed {counters['accept_errors']} times: spinning"
    warnings = server.stderr().count("pausing accepts")
    assert 1 <= warnings <= counters["accept_backoffs"]
