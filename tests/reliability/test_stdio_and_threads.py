"""Scenario 23: a server with nobody to read its ready line; a threaded server out of threads;
a bind that is not loopback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from iomodels import startup
from tests.support import ALL_MODELS
from tests.reliability.helpers import read_stats, serves


@pytest.mark.scenario(23, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["stdout closed", "reader gone"])
def test_no_one_to_read_the_ready_line_is_one_line_and_a_failure(how):
    """`serve` with stdout closed (`>&-`), or a pipe whose reader has gone. Pass: non-zero exit
    status, one line on stderr, no traceback (it used to exit 0, serving no one)."""
    cmd = [sys.executable, "-m", "iomodels", "serve", "--port", "0"]
    if how == "stdout closed":
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                timeout=30, preexec_fn=lambda: os.close(1))
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30)
        finally:
            os.close(write_end)
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ready line" in lines[0], result.stderr


# Connection threads cannot be started: what "can't start new thread" does at the thread limit.
NO_THREADS = """
from iomodels.serving import toolkit
from iomodels.serving.models import threaded
_start = toolkit.start_thread
def start_thread(target, *args, name=None):
    if name == threaded.CONNECTION_THREAD:
        raise RuntimeError("can't start new thread")
    return _start(target, *args, name=name)
toolkit.start_thread = start_thread
"""


@pytest.mark.scenario(23, models=["threaded"])
@pytest.mark.timeout(60)
def test_threaded_out_of_threads_logs_one_line_per_episode(serve, tmp_path):
    """threaded, where no connection thread can be started; 30 clients. Pass: each is refused
    (none answered), counted in `rejected_no_thread`, and the log has one warning, no traceback."""
    stats_file = tmp_path / "stats.json"
    server = serve("threaded", "--stats-file", str(stats_file), prelude=NO_THREADS)
    for _ in range(30):
        try:  # a reset is expected (it may even come before connect() returns); EOF would do
            with server.connect(timeout=10) as sock:
                sock.sendall(b"anyone?")
                assert sock.recv(16) == b""
        except ConnectionResetError:
            pass
    assert not serves(server, timeout=2)
    server.stop()
    assert read_stats(stats_file)["rejected_no_thread"] >= 30
    logged = server.stderr()
    assert logged.count("can't start new thread") == 1, logged[-3000:]
    assert "Traceback" not in logged


@pytest.mark.scenario(23, models=ALL_MODELS)  # start-up code every model shares
def test_a_bind_that_is_not_loopback_is_warned_about(caplog):
    """The warning is tested without binding a public address (no packet leaves loopback)."""
    with caplog.at_level(logging.WARNING, logger="iomodels"):
        startup.warn_if_exposed("127.0.0.1", "--host")
        startup.warn_if_exposed("::1", "--host")
        assert not caplog.records
        startup.warn_if_exposed("0.0.0.0", "--host")
    assert len(caplog.records) == 1 and "reachable from other machines" in caplog.records[0].getMessage()
