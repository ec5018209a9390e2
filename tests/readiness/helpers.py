"""What the readiness tests share: the readiness models, counters read from a live server, peak memory."""

from __future__ import annotations

import json
import os
import resource
import signal

from tests import support

READINESS_MODELS = support.models_where(kind="readiness")


def read_counters(server: support.RunningServer, path: str) -> dict:
    """Ask a server started with `--stats-file path` for its counters now (SIGUSR1) and read them."""
    if os.path.exists(path):
        os.unlink(path)
    os.kill(server.pid, signal.SIGUSR1)
    assert support.wait_until(lambda: os.path.exists(path), timeout=10), "no stats file after SIGUSR1"
    with open(path) as f:
        return json.load(f)


def read_final_counters(path: str) -> dict:
    """The counters a stopped server wrote at exit."""
    with open(path) as f:
        return json.load(f)


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes: catches short peaks too."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def raise_own_fd_limit(wanted: int) -> None:
    """Let this test process hold `wanted` sockets (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
