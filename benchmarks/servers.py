"""The servers a benchmark compares: the C reference, the bare baselines, every iomodels model.

Each runs as its own process, pinned to one CPU, started on a free port and stopped by its PID
(SIGTERM, then SIGKILL): never by name. A server is ready once it says where it listens: the
Python ones print `listening on HOST:PORT (...)`, the C reference writes its port to a file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "benchmarks" / "baselines"
READY = re.compile(rb"listening on [\d.]+:(\d+)")
C_LIFETIME = 900  # the C server exits by itself after this long, should we fail to stop it
# glibc's malloc serves a block over its mmap threshold (128 KiB at start) with mmap/munmap, and
# raises that threshold the first time such a block is freed whole. asyncio's transports recv()
# 256 KiB at a time (then shrink the bytes object), so a stdlib asyncio server pays mmap, mremap
# and munmap on every read, or nothing, depending on what its process happened to free before:
# 24 against 8 us per request here, for the same code. Fixed thresholds put every server in the
# same (cheap) regime, so ratios compare code, not allocation history (see BENCHMARKS.md).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(8 << 20)}


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to start one server."""
    name: str
    kind: str  # "c" (the C reference), "baseline" (a bare Python server) or "model" (ours)
    argv: tuple[str, ...]
    # Serves one client at a time (the `blocking` model): only measured with one connection.
    single_client: bool = False

    def command(self, connections: int, port_file: str) -> list[str]:
        argv = [part.replace("{port_file}", port_file) for part in self.argv]
        if self.name == "threadpool":
            # A pool smaller than the clients leaves the rest unanswered in the accept queue (its
            # lesson, not a speed): size it to the load, as socketserver's thread per client is.
            argv += ["--threads", str(max(4, connections))]
        return argv


def catalogue(ref: Path | None, models: list[str]) -> list[Spec]:
    """The C reference (if built), the baselines, then the models in the tutorial's order."""
    py = sys.executable
    specs = []
    if ref is not None:
        specs.append(Spec("C epoll", "c", (str(ref / "epoll_echo"), "--port", "0", "--port-file", "{port_file}",
                                           "--lifetime", str(C_LIFETIME))))
    specs += [
        Spec("asyncio Protocol", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0")),
        Spec("uvloop Protocol", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0", "--uvloop")),
        # What bounding every read (our event-loop models' BufferedProtocol) costs by itself.
        Spec("asyncio Buffered", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0", "--buffered")),
        Spec("uvloop Buffered", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0", "--uvloop",
                                             "--buffered")),
        Spec("socketserver", "baseline", (py, str(BASELINES / "socketserver_echo.py"), "0")),
        Spec("selectors loop", "baseline", (py, str(BASELINES / "selectors_echo.py"), "0")),
    ]
    for model in models:
        name, _, mode = model.partition(":")
        argv = [py, "-m", "iomodels", "serve", "--model", name, "--port", "0", "--log-level", "warning"]
        if mode:
            argv += ["--uring-mode", mode]
        specs.append(Spec(model, "model", tuple(argv), single_client=name == "blocking"))
    return specs


class ServerFailed(RuntimeError):
    pass


def _pin(cpus: set[int] | None):
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


class Running:
    """One started server: its PID and port; `stop()` ends it and returns what it wrote on stderr."""

    def __init__(self, spec: Spec, connections: int, cpus: set[int] | None, env: dict | None = None,
                 timeout: float = 20.0):
        self.spec = spec
        self._dir = tempfile.TemporaryDirectory(prefix="iomodels-bench-")
        port_file = os.path.join(self._dir.name, "port")
        self._stderr = open(os.path.join(self._dir.name, "stderr"), "w+b")
        self.proc = subprocess.Popen(spec.command(connections, port_file), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
                                     env={**os.environ, **(env or {})},
                                     preexec_fn=_pin(cpus), start_new_session=True)
        self.pid = self.proc.pid
        try:
            self.port = self._wait_ready(port_file, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, port_file: str, deadline: float) -> int:
        out = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.spec.kind == "c":
                if os.path.exists(port_file) and (text := open(port_file).read().strip()):
                    return int(text)
                time.sleep(0.02)
            elif select.select([self.proc.stdout], [], [], 0.1)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                out += chunk
                if match := READY.search(out):
                    return int(match.group(1))
        raise ServerFailed(f"{self.spec.name} did not start: {self.stderr()[-500:] or 'no output'}")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> str:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Its own session (start_new_session): the group is the server and its children.
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        text = self.stderr()
        self._stderr.close()
        self._dir.cleanup()
        return text
