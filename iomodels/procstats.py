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
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
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
                cpu = proc.cpu_times()
                memory = proc.memory_full_info()
                threads = proc.num_threads()
                switches = _task_switches(proc.pid) or tuple(proc.num_ctx_switches())
        except psutil.Error:
            continue
        # children_* holds the CPU of children this process reaped (forked per connection).
        totals["cpu_user_s"] += cpu.user + cpu.children_user
        totals["cpu_system_s"] += cpu.system + cpu.children_system
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
