"""The lab's servers: real `iomodels serve` processes, started, read and stopped by PID.

A server runs as `python -m iomodels serve --model M --port 0 --stats-file F` in a session of its
own, so a Ctrl-C in the terminal reaches the lab and not the servers: the lab stops them itself,
by PID (SIGTERM, then SIGKILL), never by name. `counters()` sends SIGUSR1 and reads the JSON the
server rewrites; `figures()` reads the process tree from outside (procstats).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from iomodels import procstats

READY = re.compile(rb"listening on ([\d.]+):(\d+) \(model (\S+)\)")


class ServerFailed(RuntimeError):
    """The server did not start, or died: the message says why (its last stderr lines)."""


class LabServer:
    def __init__(self, model: str, *flags: str, nofile: int | None = None, ready_timeout: float = 20.0):
        self.model = model
        self._dir = tempfile.TemporaryDirectory(prefix=f"iomodels-lab-{model}-")
        self.stats_path = os.path.join(self._dir.name, "stats.json")
        self._stderr = open(os.path.join(self._dir.name, "stderr.log"), "w+")
        cmd = [sys.executable, "-m", "iomodels", "serve", "--model", model, "--port", "0",
               "--stats-file", self.stats_path, "--log-level", "warning", *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_nofile(nofile) if nofile else None)
        try:
            self.host, self.port = self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        match = READY.search(line)
        if not match:
            raise ServerFailed(f"{self.model} server did not start: {self.last_error() or line!r}")
        return match.group(1).decode(), int(match.group(2))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        self._stderr.flush()
        with open(self._stderr.name, errors="replace") as f:
            return f.read()

    def last_error(self) -> str:
        """The last meaningful line the server logged (why it refused or died), or ''."""
        lines = [line.strip() for line in self.stderr().splitlines() if line.strip()]
        return lines[-1][-300:] if lines else ""

    def counters(self, timeout: float = 10.0) -> dict:
        """The server's counters and own CPU/context switches now (SIGUSR1 makes it rewrite the file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stats_path)
        if not self.alive():
            raise ServerFailed(f"{self.model} server died: {self.last_error()}")
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError), open(self.stats_path) as f:
                return json.load(f)
            if not self.alive():
                raise ServerFailed(f"{self.model} server died: {self.last_error()}")
            time.sleep(0.01)
        raise ServerFailed(f"{self.model} server did not write its counters within {timeout:.0f} s")

    def figures(self) -> procstats.Figures:
        return procstats.tree(self.pid)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL; also kill any descendant it left behind. Returns the status."""
        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.pid).children(recursive=True)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.proc.stdout.close()
        self._stderr.close()
        self._dir.cleanup()
        return self.proc.returncode

    def __enter__(self) -> "LabServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def delta(before: dict, after: dict) -> dict:
    """Counter differences between two `counters()` readings (numbers only)."""
    return {key: round(after[key] - before.get(key, 0), 6) for key, value in after.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _nofile(limit: int):
    def preexec():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    return preexec
