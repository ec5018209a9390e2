"""io_uring where it is forbidden, and io_uring's own machinery (batching, both receive modes).

A seccomp profile or `kernel.io_uring_disabled` cannot be set up by a test, so this process's
uring_api is told so instead: `iomodels serve` must say why in one line and exit with status 2,
and the conformance fixture must skip the model with that reason.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time

import pytest

from iomodels import cli
from tests import support

from tests.reliability.helpers import fill_until_stalled, reset, settled_fds

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["unavailable", "setup-eperm"])
def forbidden(request, monkeypatch):
    """This process's io_uring refused, as a kernel or a seccomp policy may; yields how."""
    import uring_api

    from iomodels.serving import uring

    if request.param == "unavailable":
        monkeypatch.setattr(uring_api, "is_available", lambda: False)
    else:
        def refused(*args, **kwargs):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        monkeypatch.setattr(uring_api, "Ring", refused)
    uring.unavailable_reason.cache_clear()  # asked once per process, normally
    yield request.param
    uring.unavailable_reason.cache_clear()


# The real server process saying so in one line, exit 2: tests/reliability scenario 13.
def test_serve_and_the_conformance_fixture_say_why(forbidden, capsys):
    reason = support.skip_reason("io_uring")
    expected = "refused" if forbidden == "unavailable" else "Operation not permitted"
    assert reason and expected in reason, reason
    assert cli.main(["serve", "--model", "io_uring", "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "cannot run here" in err and reason in err


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
    counters = support.read_stats_file(stats_file)
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
    server = serve("io_uring", "--uring-mode", "multishot", env=support.patched_env(tmp_path, TWO_BUFFERS))
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
    env = support.patched_env(tmp_path, "from iomodels.serving.models import io_uring\nio_uring.RING_ENTRIES = 8\n")
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
    counters = support.read_stats_file(stats_file)
    assert counters["recv_calls"] >= 32 * rounds, counters
    assert counters["send_calls"] * 4 < counters["recv_calls"], counters


@pytest.mark.parametrize("mode", ["oneshot", "multishot"])
def test_a_closed_connection_frees_its_memory_without_the_cycle_collector(serve, mode, tmp_path):
    """With the cycle collector off, 80 peers that stall the server (output it cannot deliver)
    and then reset leave no memory behind: what a connection holds goes when it closes."""
    server = serve("io_uring", "--uring-mode", mode, "--high-water", "64K", "--low-water", "16K",
                   env=support.patched_env(tmp_path, "import gc\ngc.disable()\n"))

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
