"""A server that talks before it is asked: the load generator counts a protocol error per
connection and exits 1, without a traceback (before: a worker died on a RuntimeError, writing its
first request to the transport that the protocol error had just aborted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import support
from tests.faulty import FaultyServer


@pytest.mark.parametrize("mode", [(), ("--rate", "200")], ids=["closed-loop", "open-loop"])
def test_bytes_before_the_first_request(mode):
    with FaultyServer(greeting=b"unasked") as server:
        result = subprocess.run([sys.executable, "-m", "iomodels", "bench", f"127.0.0.1:{server.port}", "-c", "2",
                                 "--duration", "0.5", "-w", "0", "--json", *mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "protocol error" in result.stderr
    assert json.loads(result.stdout)["errors"] == 2
