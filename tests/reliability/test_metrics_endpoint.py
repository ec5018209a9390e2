"""Scenario 21: the metrics endpoint cannot be used to exhaust the server, and says where it is.

prometheus_client's own HTTP server has no timeout and no limit: each half-sent request held a
thread and a descriptor forever, outside --max-connections (190 of them pushed a server with a
soft limit of 200 into EMFILE). It bound --host, and `--metrics-port 0` never said which port.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from iomodels.serving import metrics
from tests import support
from tests.support import ALL_MODELS
from tests.reliability.helpers import serves

SLOW_REQUESTS = 40


def _metrics_address(server) -> tuple[str, int]:
    pattern = re.compile(r"metrics on http://([\d.]+):(\d+)/metrics")
    assert support.wait_until(lambda: pattern.search(server.stderr()), timeout=10), server.stderr()
    host, port = pattern.search(server.stderr()).groups()
    return host, int(port)


def _scrape(address, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=timeout) as reply:
        return reply.read().decode()


@pytest.mark.scenario(21, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(90)
def test_half_sent_scrapes_are_bounded_in_number_and_time(serve):
    """40 connections to the endpoint that send half a request and wait, with a descriptor limit
    of 64. Pass: the server's descriptors stay within the endpoint's cap, echo clients are served
    throughout, the half-sent requests are closed within the request timeout (bounded wait), and
    a scrape then succeeds."""
    server = serve("epoll", "--metrics-port", "0", nofile=64)
    address = _metrics_address(server)
    assert "iomodels_accepts_total" in _scrape(address)
    baseline = server.num_fds()
    slow = []
    for _ in range(SLOW_REQUESTS):
        try:
            sock = support.connect(address, timeout=10)
            sock.sendall(b"GET /metr")
        except ConnectionResetError:  # beyond the cap, reset so fast that connect() sees it
            continue
        slow.append(sock)
    time.sleep(0.5)
    assert server.num_fds() <= baseline + metrics.MAX_SCRAPES + 2
    assert serves(server)
    for sock in slow:
        assert support.is_closed_by_peer(sock, timeout=metrics.REQUEST_TIMEOUT + 5)
        sock.close()
    assert "iomodels_connections_open" in _scrape(address)
    assert serves(server)


@pytest.mark.scenario(21, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(60)
def test_the_endpoint_binds_loopback_whatever_host_is(serve):
    """`--host 127.0.0.2 --metrics-port 0` (a loopback address of its own, standing for a public
    one). Pass: the endpoint is on 127.0.0.1, on the port it logged."""
    server = serve("epoll", "--host", "127.0.0.2", "--metrics-port", "0")
    address = _metrics_address(server)
    assert address[0] == "127.0.0.1"
    assert "iomodels_uptime_seconds" in _scrape(address)


def _serve_status(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iomodels", "serve", *flags], capture_output=True,
                          text=True, timeout=30)


@pytest.mark.scenario(21, models=ALL_MODELS)  # start-up code every model shares
@pytest.mark.timeout(60)
def test_a_busy_or_clashing_metrics_port_is_refused_at_start_up():
    """A metrics port already in use, and one equal to --port. Pass: exit status 2, one line on
    stderr, no ready line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flags in (("--port", "0", "--metrics-port", str(port)),
                      ("--port", str(port + 1 if port < 65535 else port - 1),
                       "--metrics-port", str(port + 1 if port < 65535 else port - 1))):
            result = _serve_status(*flags)
            assert result.returncode == 2, (flags, result)
            assert "listening on" not in result.stdout
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "metrics" in lines[0], result.stderr
