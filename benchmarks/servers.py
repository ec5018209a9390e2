"""The servers a benchmark compares: the C reference, the bare baselines, every iomodels model.

Each runs as its own process, pinned to one CPU, started on a free port and stopped by its PID
(SIGTERM, then SIGKILL): never by name, through the project's one launcher (iomodels/launcher.py).
A server is ready once it says where it listens: the Python ones print the ready line, the C
reference writes its port to a file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from iomodels.launcher import ServerFailed, ServerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "benchmarks" / "baselines"
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
    cwd: Path = ROOT  # where `python -m iomodels` finds the package: this checkout or another

    def command(self, connections: int, port_file: str) -> list[str]:
        argv = [part.replace("{port_file}", port_file) for part in self.argv]
        if self.name == "threadpool":
            # A pool smaller than the clients leaves the rest unanswered in the accept queue (its
            # lesson, not a speed): size it to the load, as socketserver's thread per client is.
            argv += ["--threads", str(max(4, connections))]
        return argv


def catalogue(ref: Path | None, models: list[str], before: Path | None = None) -> list[Spec]:
    """The C reference (if built), the baselines, then the models in the tutorial's order; with
    `before` (a checkout of an earlier commit), each model also as it was there, as MODEL@before."""
    py = sys.executable
    specs = []
    if ref is not None:
        specs.append(Spec("C epoll", "c", (str(ref / "epoll_echo"), "--port", "0", "--port-file", "{port_file}",
                                           "--lifetime", str(C_LIFETIME))))
    specs += [
        Spec("asyncio Protocol", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0")),
        Spec("uvloop Protocol", "baseline", (py, str(BASELINES / "asyncio_echo.py"), "0", "--uvloop")),
        # What bounding every read with a BufferedProtocol would cost by itself (the event-loop
        # models use a plain Protocol, as the two above).
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
        if before is not None:
            specs.append(Spec(f"{model}@before", "model", tuple(argv), single_client=name == "blocking",
                              cwd=before))
    return specs


def start(spec: Spec, connections: int, cpus: set[int] | None, env: dict | None = None,
          timeout: float = 20.0) -> ServerProcess:
    """Start `spec` pinned to `cpus` in a session of its own; the launcher stops it by PID."""
    port_file = None
    if spec.kind == "c":
        port_file = os.path.join(tempfile.mkdtemp(prefix="iomodels-bench-"), "port")
    return ServerProcess(spec.command(connections, port_file or ""), spec.name, cpus=cpus, env=env,
                         new_session=True, port_file=port_file, cwd=str(spec.cwd), ready_timeout=timeout)


def stop(server: ServerProcess) -> str:
    """Stop it; return what it wrote on stderr."""
    server.stop(timeout=10, check=False)
    return server.stderr()
