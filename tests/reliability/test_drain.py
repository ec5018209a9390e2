"""Scenario 10: SIGTERM while clients are mid-stream. Stop taking new ones, finish the old ones.

What a deploy does to a server many times a day: the listener closes at once (new clients are
refused and go elsewhere), streams in progress are allowed to finish for `--drain-timeout`, idle
connections are closed when it ends, and the process exits 0 leaving nothing behind.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time

import psutil
import pytest

from tests import support
from tests.reliability.helpers import per_model, run_all

ACTIVE, IDLE = 50, 10
DRAIN = 3.0  # the default: the streams need about one second after the signal
CHUNKS, CHUNK = 40, 2048


def _refused(server) -> bool:
    try:
        support.connect(server.address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.scenario(10)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("model", per_model(
    not_concurrent=": 50 streams cannot be active at once"))
def test_sigterm_drains_active_streams(serve, model, record_property):
    """Scenario 10. 50 clients streaming (request/reply, 40 x 2 KiB with pauses) and 10 idle ones;
    SIGTERM mid-stream, `--drain-timeout 3`. Pass: new connections are refused (bounded wait),
    every stream finishes byte-exact, the idle ones are closed, the server exits 0 within a
    bounded wait and leaves no child process (running or zombie) behind."""
    extra = ("--threads", str(ACTIVE + IDLE + 4)) if model == "threadpool" else ()
    server = serve(model, "--drain-timeout", str(DRAIN), *extra)
    idle = [server.connect(timeout=30) for _ in range(IDLE)]
    for sock in idle:
        assert support.request(sock, b"idle") == b"IDLE"
    progress = threading.Semaphore(0)

    def stream(i):
        rng = random.Random(i)
        with server.connect(timeout=30) as sock:
            for n in range(CHUNKS):
                data = rng.randbytes(CHUNK)
                if support.request(sock, data) != data.upper():
                    return f"stream {i}: wrong reply to chunk {n}"
                if n == 2:
                    progress.release()
                time.sleep(0.02)
            sock.shutdown(socket.SHUT_WR)
            return "ok" if sock.recv(1) == b"" else f"stream {i}: no EOF after the last reply"

    results: list = []
    runner = threading.Thread(target=lambda: results.extend(
        run_all([lambda i=i: stream(i) for i in range(ACTIVE)], concurrently=True)), daemon=True)
    runner.start()
    for _ in range(ACTIVE):  # every stream is under way
        assert progress.acquire(timeout=60), "streams did not start"
    children = server.descendants()
    os.kill(server.pid, signal.SIGTERM)
    signalled = time.monotonic()
    assert support.wait_until(lambda: _refused(server), timeout=5), f"{model}: still accepting after SIGTERM"
    record_property("refused_after_s", round(time.monotonic() - signalled, 2))
    runner.join(90)
    assert results == ["ok"] * ACTIVE, [r for r in results if r != "ok"][:5]
    try:
        status = server.proc.wait(timeout=DRAIN + 1 + 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{model} still running {DRAIN + 16}s after SIGTERM")
    record_property("exit_after_sigterm_s", round(time.monotonic() - signalled, 2))
    assert status == 0, server.stderr()[-3000:]
    for sock in idle:
        assert support.is_closed_by_peer(sock, timeout=5)
        sock.close()
    assert support.wait_until(lambda: not any(psutil.pid_exists(c.pid) for c in children), timeout=10), \
        f"{model} left children behind: {[c for c in children if psutil.pid_exists(c.pid)]}"
