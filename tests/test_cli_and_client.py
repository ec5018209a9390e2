"""The command line as a user meets it: one clear line for user errors, the client typed and piped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import support

IOMODELS = [sys.executable, "-m", "iomodels"]
PEERS = Path(__file__).parent / "peers"


def run(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*IOMODELS, *args], input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, fragment", [
    (("serve", "--model", "nope"), "unknown model 'nope'"),
    (("serve", "--bogus"), "unrecognized arguments: --bogus"),
    (("serve", "--port", "70000"), "--port must be an integer from 0 to 65535"),
    (("serve", "--high-water", "1K", "--low-water", "2K"), "--low-water (2048) must not exceed --high-water (1024)"),
    (("serve", "--idle-timeout", "-1"), "expected a positive number of seconds"),
    (("serve", "--host", "example.org"), "--host must be an IP address"),
    (("client", "nonsense"), "expected HOST:PORT"),
    (("explain", "nope"), "unknown model"),
])
def test_user_errors_are_one_line_and_status_2(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_busy_port_is_one_line(serve):
    server = serve("threaded")
    result = run("serve", "--model", "threaded", "--port", str(server.port))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"iomodels serve: error: cannot listen on 127.0.0.1:{server.port}: "
                                     "Address already in use")


def test_models_lists_every_model_and_explain_prints_the_essay():
    listing = run("models")
    assert listing.returncode == 0
    for name in support.ALL_MODELS:
        assert name in listing.stdout
        essay = run("explain", name)
        assert essay.returncode == 0 and len(essay.stdout) > 400, f"{name} has no essay"


def test_help_teaches():
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--port", "--max-connections", "--idle-timeout", "--high-water", "--drain-timeout"):
        assert flag in result.stdout


def test_client_piped_prints_one_reply_per_line(serve):
    server = serve("threaded")
    result = run("client", f"127.0.0.1:{server.port}", stdin="hello\n\nwörld @[`{\n" + "x" * 5000 + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["HELLO", "WöRLD @[`{", "X" * 5000]


def test_client_message_and_refused(serve):
    server = serve("threaded")
    result = run("client", f"127.0.0.1:{server.port}", "--message", "one shot")
    assert (result.returncode, result.stdout) == (0, "ONE SHOT\n")
    server.stop()
    refused = run("client", f"127.0.0.1:{server.port}", "--message", "x")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"iomodels client: 127.0.0.1:{server.port}: Connection refused"


@pytest.mark.parametrize("peer", ["tutorial_select_server.py", "tutorial_nonblocking_server.py"])
def test_our_client_against_the_tutorials_servers(peer):
    server = support.start_command([sys.executable, str(PEERS / peer), "0"], peer)
    try:
        result = run("client", f"127.0.0.1:{server.port}", stdin="hello\nselect and epoll\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["HELLO", "SELECT AND EPOLL"]
    finally:
        server.kill()
