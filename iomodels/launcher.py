"""The one launcher of servers: start a command, wait for its ready line, read it, stop it by PID.

Tests, the lab and the benchmarks all start servers as real processes through `ServerProcess`:
- the command is any server that prints the ready line `listening on HOST:PORT (model NAME)`
  (iomodels/ready.py), or writes its port to a file (`port_file=`, for servers that print nothing);
- it gets a session of its own (`new_session=True`), so a Ctrl-C in the terminal reaches the tool,
  which stops the server itself; an optional CPU set pins it; an optional RLIMIT_NOFILE bounds it;
- `counters()` sends SIGUSR1 and reads the JSON the server rewrites (`--stats-file`);
- `stop()` sends SIGTERM by PID, waits, then SIGABRT (PYTHONFAULTHANDLER prints every thread's
  stack) and SIGKILL; whatever child processes it left are killed too. Never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from iomodels import procstats
from iomodels import ready as ready_line



class ServerFailed(RuntimeError):
    """The server did not start, died, did not answer, or did not stop: the message says why."""


def serve_command(model: str, *flags: str, stats_file: str | None = None) -> list[str]:
    """`python -m iomodels serve --model MODEL --port 0 [--stats-file F] FLAGS...`."""
    stats = ["--stats-file", stats_file] if stats_file else []
    return [sys.executable, "-m", "iomodels", "serve", "--model", model, "--port", "0", *stats, *flags]


class ServerProcess:
    def __init__(self, cmd: list[str], name: str, *, nofile: int | None = None, env: dict | None = None,
                 cpus: set[int] | None = None, new_session: bool = False, port_file: str | None = None,
                 stats_file: str | None = None, cwd: str | None = None, ready_timeout: float = 20.0):
        self.name = name
        self.stats_path = stats_file
        self._dir = tempfile.TemporaryDirectory(prefix=f"iomodels-{name.replace(' ', '_')}-")
        self._stderr = open(os.path.join(self._dir.name, "stderr.log"), "w+")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, cwd=cwd,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
            start_new_session=new_session, preexec_fn=_preexec(nofile, cpus))
        self.process: psutil.Process | None = None
        try:  # from here on, whatever interrupts us (Ctrl-C included) kills what we started
            self.process = psutil.Process(self.proc.pid)
            self.host, self.port = self._wait_ready(port_file, time.monotonic() + ready_timeout)
        except BaseException:
            self.kill()
            self._close_files()
            raise

    @classmethod
    def serve(cls, model: str, *flags: str, stats: bool = False, **options) -> "ServerProcess":
        """Start `iomodels serve --model MODEL --port 0 FLAGS` (with a private stats file if `stats`)."""
        stats_file = None
        if stats:
            stats_file = os.path.join(tempfile.mkdtemp(prefix=f"iomodels-stats-{model}-"), "stats.json")
        return cls(serve_command(model, *flags, stats_file=stats_file), model, stats_file=stats_file, **options)

    def _wait_ready(self, port_file: str | None, deadline: float) -> tuple[str, int]:
        output = b""
        while time.monotonic() < deadline:
            if port_file is not None:
                with contextlib.suppress(FileNotFoundError, ValueError), open(port_file) as f:
                    return "127.0.0.1", int(f.read().strip())
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            elif select.select([self.proc.stdout], [], [], 0.1)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                output += chunk
                if ready := ready_line.parse(output):
                    return ready[0], ready[1]
        raise ServerFailed(f"{self.name} server did not start: {self.last_error() or output[-300:]!r}")

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

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return self.process.children(recursive=True) if self.process else []
        return []

    def figures(self) -> procstats.Figures:
        """CPU, memory, threads and context switches of the server's process tree, read from outside."""
        return procstats.tree(self.pid)

    def counters(self, timeout: float = 10.0) -> dict:
        """The server's counters and own CPU now (SIGUSR1 makes it rewrite its --stats-file)."""
        if self.stats_path is None:
            raise ValueError("counters() needs a server started with a stats file (stats=True)")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stats_path)
        if not self.alive():
            raise ServerFailed(f"{self.name} server died: {self.last_error()}")
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError), open(self.stats_path) as f:
                return json.load(f)
            if not self.alive():
                raise ServerFailed(f"{self.name} server died: {self.last_error()}")
            time.sleep(0.01)
        raise ServerFailed(f"{self.name} server did not write its counters within {timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0, check: bool = True) -> int:
        """Signal the server by PID and wait; escalate if it does not exit. Returns its exit status.

        With `check`, raises ServerFailed if it had to be killed or left processes behind (after
        killing them).
        """
        children = self.descendants()
        problem = None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack to stderr
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
                self.kill()
                problem = (f"{self.name} server did not exit {timeout:g} s after {signal.Signals(sig).name}; "
                           f"its threads then:\n{self.stderr()[-6000:]}")
        _, alive = psutil.wait_procs(children, timeout=5)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        if alive and not problem:
            problem = f"{self.name} server left processes behind: {alive}"
        self._close_files()
        if problem and check:
            raise ServerFailed(problem)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and every descendant, by PID."""
        children = self.descendants()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()

    def _close_files(self) -> None:
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if self.stats_path:
            with contextlib.suppress(OSError):
                os.unlink(self.stats_path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.stats_path))

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.alive():
            self.stop(check=False)

    def __del__(self):
        with contextlib.suppress(Exception):
            self._stderr.close()
            self._dir.cleanup()


def _preexec(nofile: int | None, cpus: set[int] | None):
    if nofile is None and cpus is None:
        return None

    def preexec():
        if nofile is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    return preexec
