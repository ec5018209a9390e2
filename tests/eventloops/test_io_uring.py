"""io_uring where it is forbidden, and io_uring's own machinery (batching, both receive modes).

A seccomp profile or `kernel.io_uring_disabled` cannot be set up by a test, so a child Python is
told so instead (sitecustomize patches uring_api): the server must say why in one line and exit
with status 2 (never hang), and the conformance fixture must skip the model with that reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests import support
from tests.eventloops.helpers import patched_env, read_final_counters
from tests.reliability.helpers import fill_until_stalled, reset, settled_fds

pytestmark = pytest.mark.timeout(120)

FORBIDDEN = {
    "unavailable": """
        import uring_api
        uring_api.is_available = lambda: False
    """,
    "setup-eperm": """
        import errno, os, uring_api

        class Ring:
            def __init__(self, *args, **kwargs):
                raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

        uring_api.Ring = Ring
    """,
}


def _run(args, env, timeout=30):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("how", FORBIDDEN)
def test_serve_says_why_in_one_line_and_exits_2(how, tmp_path):
    result = _run(["-m", "iomodels", "serve", "--model", "io_uring", "--port", "0"],
                  patched_env(tmp_path, FORBIDDEN[how]))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "io_uring" in lines[0] and "cannot run here" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", FORBIDDEN)
def test_conformance_fixture_skips_with_the_reason(how, tmp_path):
    code = "from tests import support; print(support.skip_reason('io_uring'))"
    result = _run(["-c", code], patched_env(tmp_path, FORBIDDEN[how]))
    assert result.returncode == 0, result.stderr
    reason = result.stdout.strip()
    assert reason and reason != "None"
    assert ("refused" in reason) if how == "unavailable" else ("Operation not permitted" in reason)


@pytest.mark.parametrize("mode", ["oneshot", "multishot"])
def test_both_modes_batch_submissions_under_concurrency(serve, mode, tmp_path):
    """Twenty clients at once: each io_uring_enter carries the operations of several requests."""
    stats_file = str(tmp_path / "stats.json")
    server = serve("io_uring", "--uring-mode", mode, "--stats-file", stats_file)
    clients, rounds = 20, 50
    failures = []

    def client(i):
        try:
            with server.connect(timeout=60) as sock:
                for n in range(rounds):
                    data = f"client {i} message {n} ".encode() * (1 + n % 7)
                    if support.request(sock, data) != data.upper():
                        failures.append(i)
                        return
        except OSError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not failures
    assert server.stop() == 0
    counters = read_final_counters(stats_file)
    assert counters["completions"] >= clients * rounds  # one per request: sends report only failures
    assert counters["submits"] < counters["completions"], counters


# Two provided buffers only, and a note on stderr each time a receive ends for want of one.
TWO_BUFFERS = """
    import errno, sys
    from iomodels.serving.models import io_uring, _uring_connections

    io_uring.BUFFER_COUNT = 2
    _ended = _uring_connections.Connection.receive_ended

    def receive_ended(self, res):
        if res == -errno.ENOBUFS:
            print("ENOBUFS", file=sys.stderr)
        return _ended(self, res)

    _uring_connections.Connection.receive_ended = receive_ended
"""


def test_multishot_survives_running_out_of_provided_buffers(serve, tmp_path):
    """More connections with data at once than provided buffers: ENOBUFS, re-armed, nothing lost.

    The server is stopped (SIGSTOP) while 50 clients send, so their data is all waiting when it
    resumes, and two buffers cannot take it at once.
    """
    server = serve("io_uring", "--uring-mode", "multishot", env=patched_env(tmp_path, TWO_BUFFERS))
    socks = [server.connect() for _ in range(50)]
    try:
        for round_ in range(3):
            os.kill(server.pid, signal.SIGSTOP)
            try:
                for i, sock in enumerate(socks):
                    sock.sendall(b"burst %d from %d" % (round_, i))
                time.sleep(0.2)  # let the data reach the server's sockets
            finally:
                os.kill(server.pid, signal.SIGCONT)
            for i, sock in enumerate(socks):
                expected = b"BURST %d FROM %d" % (round_, i)
                assert support.recv_exactly(sock, len(expected)) == expected
    finally:
        for sock in socks:
            sock.close()
    assert "ENOBUFS" in server.stderr()


@pytest.mark.parametrize("mode", ["oneshot", "multishot"])
def test_a_full_submission_queue_loses_nothing(serve, mode, tmp_path):
    """An 8-entry ring and 50 clients with data at once: prepare must flush a full queue, not drop."""
    env = patched_env(tmp_path, "from iomodels.serving.models import io_uring\nio_uring.RING_ENTRIES = 8\n")
    server = serve("io_uring", "--uring-mode", mode, env=env)
    socks = [server.connect() for _ in range(50)]
    try:
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for i, sock in enumerate(socks):
                sock.sendall(b"queued %d" % i)
            time.sleep(0.2)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        for i, sock in enumerate(socks):
            assert support.recv_exactly(sock, len(b"queued %d" % i)) == b"QUEUED %d" % i
    finally:
        for sock in socks:
            sock.close()


def test_multishot_replies_to_a_big_message_in_few_sends(serve, tmp_path):
    """A 64 KiB message fills 32 provided buffers of 2 KiB; the completions flagged SOCK_NONEMPTY
    hold their reply back, so it goes out in one or two sends, not 32, and byte-exact."""
    stats_file = str(tmp_path / "stats.json")
    server = serve("io_uring", "--uring-mode", "multishot", "--stats-file", stats_file)
    rounds = 20
    with server.connect(timeout=60) as sock:
        for n in range(rounds):
            data = bytes(range(256)) * 256
            assert support.request(sock, data[n:] + data[:n]) == (data[n:] + data[:n]).upper()
    assert server.stop() == 0
    counters = read_final_counters(stats_file)
    assert counters["recv_calls"] >= 32 * rounds, counters
    assert counters["send_calls"] * 4 < counters["recv_calls"], counters


@pytest.mark.parametrize("mode", ["oneshot", "multishot"])
def test_a_closed_connection_frees_its_memory_without_the_cycle_collector(serve, mode, tmp_path):
    """With the cycle collector off, 80 peers that stall the server (output it cannot deliver)
    and then reset leave no memory behind: what a connection holds goes when it closes."""
    server = serve("io_uring", "--uring-mode", mode, "--high-water", "64K", "--low-water", "16K",
                   env=patched_env(tmp_path, "import gc\ngc.disable()\n"))

    def stall_and_reset(count):
        for _ in range(count):
            sock = server.connect(rcvbuf=4096, timeout=30)
            fill_until_stalled(sock, limit=1 << 20, quiet=0.1)
            reset(sock)

    stall_and_reset(5)  # warm-up: what the first connections allocate once
    fds, before = settled_fds(server), server.rss()
    stall_and_reset(80)
    assert support.wait_until(lambda: server.num_fds() <= fds, timeout=15)
    # Each held 90 to 130 KiB (pending output, a receive buffer): kept, that would be 7 MiB or more.
    assert server.rss() - before < 2 << 20, f"{mode}: {(server.rss() - before) >> 10} KiB kept"
