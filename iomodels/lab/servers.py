"""The lab's servers: real `iomodels serve` processes, through the project's one launcher.

A lab server runs in a session of its own, so a Ctrl-C in the terminal reaches the lab and not the
servers: the lab stops them itself, by PID (iomodels/launcher.py). It logs warnings only and keeps
a stats file, so `counters()` (SIGUSR1) reads the server's own counters and `figures()` reads its
process tree from outside (procstats).
"""

from __future__ import annotations

from iomodels.launcher import ServerFailed, ServerProcess

__all__ = ["LabServer", "ServerFailed", "delta"]


def LabServer(model: str, *flags: str, nofile: int | None = None, ready_timeout: float = 20.0) -> ServerProcess:
    return ServerProcess.serve(model, "--log-level", "warning", *flags, stats=True, new_session=True,
                               nofile=nofile, ready_timeout=ready_timeout)


def delta(before: dict, after: dict) -> dict:
    """Counter differences between two `counters()` readings (numbers only)."""
    return {key: round(after[key] - before.get(key, 0), 6) for key, value in after.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
