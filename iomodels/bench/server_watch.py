"""The server's side of the bill: CPU and memory of its whole process tree, via psutil.

The tree matters: the forking model does its work in children, worker models in several processes.
CPU comes from the project's one process-tree reader (iomodels.procstats.user_system: a reaped
child's CPU moves into its parent's, so the sum over the live tree counts every process once).

Finding the children scans all of /proc, which on a busy machine takes milliseconds of the CPU the
bench runs on; so the tree is looked up only at the window's edges, and memory sampled in between
(at most once a second) is that of the processes found then.
"""

from __future__ import annotations

import contextlib
import time

import psutil

from iomodels import procstats
from iomodels.bench.errors import UsageError

RSS_EVERY = 1.0  # seconds


class ServerWatch:
    def __init__(self, pid: int):
        try:
            self.root = psutil.Process(pid)
        except (psutil.NoSuchProcess, ValueError):
            raise UsageError(f"--server-pid {pid}: no such process") from None
        except psutil.AccessDenied:
            raise UsageError(f"--server-pid {pid}: not allowed to inspect that process") from None
        self.tree = [self.root]
        self.peak_rss = 0
        self.sampled = -RSS_EVERY

    def cpu_seconds(self) -> float:
        """CPU used so far by the whole tree (and, as a side effect, the tree looked up afresh)."""
        with contextlib.suppress(psutil.Error):
            self.tree = [self.root, *self.root.children(recursive=True)]
        self.sample_rss(force=True)
        return sum(procstats.user_system(self.root.pid))

    def sample_rss(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.sampled < RSS_EVERY:
            return
        self.sampled = now
        rss = 0
        for process in self.tree:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
