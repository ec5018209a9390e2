"""CPU seconds of a server's whole process tree, sampled from /proc while the load runs.

Why not `iomodels.procstats.tree()`: it goes through psutil and reads each process's memory maps
(for PSS), which costs milliseconds per process; sampling a forking server's thousand children
ten times a second that way would load the very machine we measure. Here a sample is one read of
`/proc/PID/stat` per process of the tree: utime + stime of the process (all its threads, live or
ended) plus cutime + cstime (children it has reaped), so a forked child that exits mid-window
moves its CPU from its own line to its parent's, and the sum stays continuous.

The load generator reports its measured window only after it ends, so `TreeSampler` samples
throughout the run and `cpu_between(t0, t1)` interpolates linearly between the samples that
bracket each end of the window (the server is in steady state there: the error is a fraction of
one sampling interval's change, not a whole one).
"""

from __future__ import annotations

import bisect
import os
import threading
import time

TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, user ticks, system ticks) of the process and its reaped children, None if it
    is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(b")") + 2:].split()
    # fields[0] is the state, [1] ppid, [11..14] utime stime cutime cstime (proc(5), fields 14-17).
    return int(fields[1]), int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])


def descendants(root: int) -> set[int]:
    """`root` and every live process below it (one pass over /proc)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                parents[int(name)] = stat[0]
    tree = {root}
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return tree


def user_system(root: int) -> tuple[float, float]:
    """User and system CPU seconds of `root`'s process tree (reaped children included)."""
    user = system = 0
    for pid in descendants(root):
        stat = _stat(pid)
        if stat is not None:
            user += stat[1]
            system += stat[2]
    return user * TICK, system * TICK


class TreeSampler:
    """Sample the CPU seconds of `root`'s process tree every `interval` s, in a daemon thread.

    The tree's membership is re-read from /proc every `rescan` s (new forked children); between
    rescans only the known members are read, so a sample costs one small read per process.
    A process that vanished is dropped; its CPU is already in its parent's cutime once reaped.
    """

    def __init__(self, root: int, interval: float = 0.1, rescan: float = 1.0):
        self.root = root
        self.interval = interval
        self.rescan = rescan
        self.times: list[float] = []
        self.cpu: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        members: set[int] = set()
        scanned_at = -float("inf")
        while True:
            now = time.monotonic()
            if now - scanned_at >= self.rescan:
                members, scanned_at = descendants(self.root), now
            ticks = 0
            for pid in list(members):
                stat = _stat(pid)
                if stat is None:
                    members.discard(pid)
                else:
                    ticks += stat[1] + stat[2]
            self.times.append((now + time.monotonic()) / 2)
            self.cpu.append(ticks * TICK)
            if self._stop.wait(self.interval):
                return

    def cpu_at(self, moment: float) -> float:
        times, cpu = self.times, self.cpu
        if not times:
            raise RuntimeError("no CPU sample was taken")
        i = bisect.bisect_left(times, moment)
        if i == 0:
            return cpu[0]
        if i == len(times):
            return cpu[-1]
        share = (moment - times[i - 1]) / (times[i] - times[i - 1])
        return cpu[i - 1] + share * (cpu[i] - cpu[i - 1])

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the tree used between two `time.monotonic()` moments (interpolated)."""
        return max(0.0, self.cpu_at(end) - self.cpu_at(start))
