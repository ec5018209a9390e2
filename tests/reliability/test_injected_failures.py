"""Scenarios 13 and 14: failures injected into the server process, before it starts or while it serves.

Both run the real `iomodels serve` with a prelude (Python run in the server process first) that
breaks one thing: the kernel refusing io_uring, or a bug in the protocol core for one payload.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import support
from tests.reliability.helpers import concurrent, per_model

URING_REFUSED = {
    "is_available() is false": "import uring_api\nuring_api.is_available = lambda: False",
    "setup raises EPERM": (
        "import errno, uring_api\n"
        "def _refused(*args, **kwargs):\n"
        "    raise PermissionError(errno.EPERM, 'Operation not permitted')\n"
        "uring_api.Ring = _refused"),
}


@pytest.mark.scenario(13)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", URING_REFUSED)
@pytest.mark.parametrize("model", per_model(
    only=["io_uring"], only_reason="only io_uring needs a kernel feature a machine may forbid"))
def test_io_uring_unavailable_is_one_line_and_status_2(model, how):
    """Scenario 13. `uring_api.is_available()` false, or ring setup raising EPERM, in the server
    process. Pass: `iomodels serve --model io_uring` exits with status 2 within a bounded wait
    (never a hang), printing one clear line on stderr, no traceback, no ready line."""
    main = "import sys\nfrom iomodels.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", f"{URING_REFUSED[how]}\n{main}",
                           "serve", "--model", model, "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "io_uring" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


MAGIC = b"\x00crash the core\x00"
CORE_BUG = support.core_bug(MAGIC, "injected bug in the core")


@pytest.mark.scenario(14)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("model", per_model())
def test_a_bug_in_the_core_aborts_only_that_connection(serve, model):
    """Scenario 14. EchoSession.receive_data and reply_to raise for one payload. Pass: that connection is
    aborted (closed or reset, with no reply), exactly one error with its traceback is logged, another
    open session and new clients are served, the server exits 0 at SIGTERM."""
    server = serve(model, prelude=CORE_BUG)
    server.allow_traceback = True  # one is expected: counted below
    other = server.connect() if concurrent(model) else None
    if other is not None:
        assert support.request(other, b"before") == b"BEFORE"
    with server.connect() as victim:
        victim.sendall(MAGIC)
        assert support.is_closed_by_peer(victim, timeout=10), f"{model}: the broken connection stays open"
    if other is not None:
        assert support.request(other, b"unaffected") == b"UNAFFECTED"
        other.close()
    with server.connect() as fresh:
        assert support.request(fresh, b"still serving") == b"STILL SERVING"
    assert support.wait_until(lambda: "injected bug in the core" in server.stderr(), timeout=5)
    logged = server.stderr()
    assert logged.count("Traceback") == 1 and logged.count(" ERROR ") == 1, logged[-4000:]
