"""What a server process tree costs the machine: CPU, memory, threads, processes, context switches.

Two views of the same figures:
- from inside (`own_usage()`): `getrusage` of the process itself plus its reaped children. The kernel
  keeps these totals for threads and children that are already gone, so a thread-per-connection
  server that started and ended a thousand threads still shows their CPU and context switches.
  The server writes them into its stats file and its metrics.
- from outside (`tree(pid)`): psutil over the process and all its live descendants: what is
  resident and running now (RSS and PSS, threads, child processes), CPU including reaped children, and
  context switches summed over every live thread (`/proc/PID/task/*/status`; psutil's own
  `num_ctx_switches()` reads only the main thread's line).

`Window` turns two readings into "what it cost over these seconds", e.g. CPU of one idle client.

CPU alone, cheaply (`user_system`, `TreeSampler`): `tree()` goes through psutil and reads each
process's memory maps (for PSS), milliseconds per process; sampling a forking server's thousand
children ten times a second that way would load the very machine we measure. There a sample is one
read of `/proc/PID/stat` per process of the tree: utime + stime of the process (all its threads,
live or ended) plus cutime + cstime (children it has reaped), so a forked child that exits mid-window
moves its CPU from its own line to its parent's, and the sum stays continuous. The load generator
and the benchmarks report a measured window only after it ends, so `TreeSampler` samples throughout
and `cpu_between(t0, t1)` interpolates between the samples that bracket each end of the window.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import resource
import threading
import time

import psutil


def own_usage() -> dict:
    """This process and its reaped children, from the kernel's accounting (threads included)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_user_s": round(me.ru_utime + kids.ru_utime, 6),
        "cpu_system_s": round(me.ru_stime + kids.ru_stime, 6),
        "ctx_voluntary": me.ru_nvcsw + kids.ru_nvcsw,
        "ctx_involuntary": me.ru_nivcsw + kids.ru_nivcsw,
        "max_rss_bytes": me.ru_maxrss * 1024,  # Linux reports KiB
    }


@dataclasses.dataclass(frozen=True)
class Figures:
    """A reading of a process tree. CPU and context switches are cumulative; the rest is current."""
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    rss_bytes: int = 0
    # Proportional set size: a page shared by n processes counts 1/n in each (forked children share
    # most of their parent's pages, so summed RSS would count those pages once per child).
    pss_bytes: int = 0
    threads: int = 0
    processes: int = 0  # the process itself plus its live descendants
    ctx_voluntary: int = 0
    ctx_involuntary: int = 0

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s

    @property
    def ctx_switches(self) -> int:
        return self.ctx_voluntary + self.ctx_involuntary

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cpu_s": round(self.cpu_s, 6), "ctx_switches": self.ctx_switches}


def _task_switches(pid: int) -> tuple[int, int] | None:
    """Voluntary and involuntary context switches summed over the live threads of `pid`."""
    voluntary = involuntary = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def tree(pid: int) -> Figures:
    """Figures of `pid` and its live descendants (a process that vanished mid-reading is skipped)."""
    root = psutil.Process(pid)
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return Figures()
    totals = dict.fromkeys(("cpu_user_s", "cpu_system_s", "rss_bytes", "pss_bytes", "threads", "processes",
                            "ctx_voluntary", "ctx_involuntary"), 0)
    for proc in procs:
        try:
            with proc.oneshot():
                memory = proc.memory_full_info()
                threads = proc.num_threads()
                switches = _task_switches(proc.pid) or tuple(proc.num_ctx_switches())
        except psutil.Error:
            continue
        # With the CPU of children this process reaped (forked per connection): see _stat.
        stat = _stat(proc.pid)
        if stat is None:
            continue
        totals["cpu_user_s"] += stat[1] * TICK
        totals["cpu_system_s"] += stat[2] * TICK
        totals["rss_bytes"] += memory.rss
        totals["pss_bytes"] += getattr(memory, "pss", memory.rss)
        totals["threads"] += threads
        totals["processes"] += 1
        totals["ctx_voluntary"] += switches[0]
        totals["ctx_involuntary"] += switches[1]
    return Figures(**totals)


class Window:
    """CPU and context switches of a process tree over a stretch of time.

        with Window(pid) as window:
            time.sleep(2)
        window.cpu_percent   # 100 = one core busy for the whole window
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.before = self.after = Figures()
        self.started = self.ended = 0.0

    def __enter__(self) -> "Window":
        self.before = tree(self.pid)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.ended = time.monotonic()
        self.after = tree(self.pid)

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)

    @property
    def cpu_s(self) -> float:
        return max(0.0, self.after.cpu_s - self.before.cpu_s)

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.seconds

    @property
    def ctx_switches(self) -> int:
        return max(0, self.after.ctx_switches - self.before.ctx_switches)


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

    def __enter__(self) -> "TreeSampler":
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
