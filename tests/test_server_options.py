"""`iomodels serve` given unusual values: inf as "never", NaN and inf refused where they make no
sense, IPv6 (`--host ::1`), options the model does not read, `--version`."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys

import pytest

from iomodels.serving import models
from iomodels.serving.config import MAX_SECONDS, ServerConfig
from tests import support

IOMODELS = [sys.executable, "-m", "iomodels"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*IOMODELS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("seconds", ["inf", str(MAX_SECONDS)])
@pytest.mark.parametrize("model", support.ALL_MODELS)
def test_inf_means_never_on_every_model(serve, model, seconds):
    """Before: --idle-timeout inf was an OverflowError on the event-driven models, --drain-timeout
    inf a thread's traceback at SIGTERM. Now: no timeout at all, and the drain waits for the last
    connection to close, however long that takes; the longest finite values work as well."""
    server = serve(model, "--idle-timeout", seconds, "--max-connection-age", seconds, "--drain-timeout", seconds)
    with server.connect() as sock:
        assert support.request(sock, b"never") == b"NEVER"
        os.kill(server.pid, signal.SIGTERM)  # once: a second signal may mean "now" (issue 18)
        # Draining, with no deadline: the open connection is still served.
        assert support.request(sock, b"still here") == b"STILL HERE"
    server.proc.wait(30)
    assert server.proc.returncode == 0, server.stderr()


@pytest.mark.parametrize("args, fragment", [
    (("--model", "select", "--poll-interval", "inf"), "--poll-interval must be a positive, finite number"),
    (("--model", "select", "--poll-interval", "nan"), "expected a positive number of seconds, not 'nan'"),
    (("--idle-timeout", "nan"), "expected a positive number of seconds, not 'nan'"),
    (("--max-connection-age=-inf",), "expected a positive number of seconds, not '-inf'"),
    (("--drain-timeout", "nan"), "--drain-timeout must be >= 0 seconds, not nan"),
    # Finite but past what poll() and the loops' timers take: before, an OverflowError at the first wait.
    (("--idle-timeout", "1e10"), "expected at most 1000000 seconds (or inf: never), not '1e10'"),
    (("--drain-timeout", "1e10"), "--drain-timeout must be at most 1000000 seconds (or inf: never), not 1e+10"),
])
def test_values_that_make_no_sense_are_one_line_and_status_2(args, fragment):
    result = run("serve", "--port", "0", *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# One model per way of accepting and serving: thread per client, process per client, readiness
# loops (select, epoll with workers, signal-driven), event loops, completions.
IPV6_CASES = [("threaded",), ("forking",), ("select",), ("epoll", "--workers", "2"), ("sigio",), ("asyncio",),
              ("uvloop",), ("io_uring",)]


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
@pytest.mark.parametrize("model_and_flags", IPV6_CASES, ids=lambda case: " ".join(case))
def test_ipv6_loopback(serve, model_and_flags):
    model, *flags = model_and_flags
    server = serve(model, "--host", "::1", *flags)  # before: "Address family for hostname not supported"
    assert server.host == "::1"  # the launcher read it from the ready line, '[::1]:PORT'
    with socket.create_connection(("::1", server.port), timeout=10) as sock:
        assert sock.family == socket.AF_INET6
        assert support.request(sock, b"over ipv6 \xff") == b"OVER IPV6 \xff"


def test_options_the_model_does_not_read_get_one_warning_each(serve):
    result = subprocess.Popen([*IOMODELS, "serve", "--model", "epoll", "--port", "0", "--threads", "8",
                               "--poll-interval", "1", "--uring-mode", "oneshot"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = result.stdout.readline()
    finally:
        result.send_signal(signal.SIGTERM)
        _, errors = result.communicate(timeout=30)
    assert "(model epoll)" in ready
    warnings = [line for line in errors.splitlines() if "warning:" in line]
    assert warnings == [
        "iomodels serve: warning: --poll-interval does not apply to model epoll (read by select); ignored",
        "iomodels serve: warning: --threads does not apply to model epoll (read by threadpool); ignored",
        "iomodels serve: warning: --uring-mode does not apply to model epoll (read by io_uring); ignored",
    ]
    assert result.returncode == 0


def test_applicability_comes_from_each_models_declaration():
    assert models.ignored_options("threadpool", {"threads", "recv_size"}) == []
    assert models.ignored_options("uvloop", {"recv_size", "backlog"}) == ["recv_size"]
    assert models.readers("recv_size") == "every model but uvloop"
    known = {field.name for field in dataclasses.fields(ServerConfig)}
    for name in models.names():  # every option a model declares is one ServerConfig knows
        assert set(models.info(name).reads) <= known, name


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("iomodels 0.")
