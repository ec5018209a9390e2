"""strace's output parsed, and the one-line failures: an unknown model, no strace, no ptrace."""

from __future__ import annotations

import os
import subprocess
import sys

from iomodels.trace import phases, strace

SAMPLE = """\
100 1700000000.000100 epoll_wait(6<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=7, u64=7}}], 1023, -1) = 1 <0.196686>
100 1700000000.196900 recvfrom(7<TCP:[127.0.0.1:4000->127.0.0.1:5000]>, "hello", 65536, 0, NULL, NULL) = 5 <0.000011>
101 1700000000.197000 recvfrom(8<TCP:[127.0.0.1:4000->127.0.0.1:5001]>, "", 65536, 0, NULL, NULL <unfinished ...>
100 1700000000.197010 accept4(5<TCP:[127.0.0.1:4000]>, 0x7ffc, [16], SOCK_CLOEXEC) = -1 EAGAIN (Resource temporarily unavailable) <0.000024>
101 1700000000.197500 <... recvfrom resumed>) = 0 <0.000500>
100 1700000000.198000 --- SIGIO {si_signo=SIGIO} ---
100 1700000000.199000 +++ exited with 0 +++
"""


def test_strace_lines_become_calls():
    calls = strace.parse(SAMPLE)
    assert [c.call for c in calls] == ["epoll_wait", "recvfrom", "recvfrom", "accept4"]
    wait, recv, resumed, accept = calls
    assert (wait.lane, wait.value, wait.result) == (100, 1, "1") and abs(wait.duration - 0.196686) < 1e-9
    assert recv.value == 5 and "127.0.0.1:5000]" in recv.args
    assert resumed.lane == 101 and resumed.value == 0 and resumed.start == 1700000000.197  # joined to its start
    assert accept.result == "EAGAIN" and accept.value is None


def test_timeouts_are_read_from_the_arguments():
    assert phases.timeout_ms("epoll_wait", "6<x>, [{events=EPOLLIN, data={u32=7, u64=7}}], 1023, -1") is None
    assert phases.timeout_ms("poll", "[{fd=5, events=POLLIN}], 1, 500") == 500
    assert phases.timeout_ms("pselect6", "7, [3 5], NULL, NULL, {tv_sec=0, tv_nsec=20000000}, NULL") == 20


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "iomodels", "trace", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_an_unknown_model_is_one_line_and_status_2():
    out = run_cli("nosuch")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown model" in out.stderr


def test_without_strace_it_says_what_is_missing_and_how_to_add_it(tmp_path):
    out = run_cli("epoll", env={"PATH": str(tmp_path)})
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "strace is not installed" in out.stderr and "apt-get install strace" in out.stderr


def test_a_tracer_that_cannot_attach_is_one_line(tmp_path):
    fake = tmp_path / "strace"
    fake.write_text("#!/bin/sh\necho 'strace: ptrace(PTRACE_TRACEME, ...): Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = run_cli("epoll", env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "Operation not permitted" in out.stderr and "ptrace" in out.stderr


def test_a_model_that_cannot_run_here_is_one_clear_error(monkeypatch):
    import pytest

    from iomodels.serving import models
    from iomodels.trace import run
    monkeypatch.setattr(models, "unavailable_reason", lambda name: "io_uring is disabled (kernel.io_uring_disabled=2)")
    with pytest.raises(strace.TraceError, match="io_uring cannot run here: io_uring is disabled"):
        run.take("io_uring")


def test_the_lab_says_why_the_figures_are_not_drawn_without_strace(monkeypatch):
    import io

    from rich.console import Console

    from iomodels.lab import plotting, runner
    monkeypatch.setattr(strace.shutil, "which", lambda name: None)
    records, _ = runner.run(["who_waits_where"], "tiny", ["epoll"], console=Console(file=io.StringIO()))
    record = records[0]
    assert record.verdict == runner.UNKNOWN and "apt-get install strace" in record.deciding
    assert any("apt-get install strace" in note for note in record.notes)
    svg = plotting.to_svg(runner.load("who_waits_where").plots(record)[0], "x")
    assert "not drawn" in svg
