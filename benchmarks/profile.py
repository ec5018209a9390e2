"""Where one server's time goes under the benchmark's load: system calls, Python lines, user/system.

    .venv/bin/python benchmarks/profile.py epoll                   # every tool available
    .venv/bin/python benchmarks/profile.py "selectors loop" --tools strace,split
    .venv/bin/python benchmarks/profile.py "C epoll" --tools split,switches

The server (any name `run.py` knows: a model, "C epoll", "asyncio Protocol"...) runs pinned to
CPU 0 under the C load generator on CPU 1; after a second of warm-up each tool watches it for
`--seconds`, one after the other, each on a fresh run:
- strace:   `strace -c -f -p PID`: system calls by count (strace slows the server down: read
            the counts per request, not the times);
- py-spy:   `py-spy record -r 500`, summed by Python line, where the samples stop (self time,
            which includes the system calls made on that line);
- split:    user and system CPU per request, from /proc/PID/stat of the whole process tree;
- switches: context switches per request, summed over the threads of the process;
- perf:     `perf record -e cpu-clock` (no hardware counters needed), samples grouped by the
            object they fell in (the kernel, Python, uring_api, libc + vdso, uvloop/libuv, the C
            server), as us of CPU per request: where a model's cost is the kernel's or the binding's.
Tools that are not installed are skipped with a note (py-spy: `pip install py-spy`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iomodels.procstats import user_system  # noqa: E402
from run import CLIENT_CPU, MODELS, SERVER_CPU, find_reference  # noqa: E402
from servers import MALLOC_ENV, catalogue, start, stop  # noqa: E402

TOOLS = ("strace", "py-spy", "split", "switches", "perf")
# perf's objects ("dso"), grouped: the first pattern that matches names the group.
PERF_GROUPS = [("kernel", r"\[kernel"), ("Python", r"libpython|_socket|select\.cpython|_asyncio"),
               ("uring_api", r"_uring_api|liburing"), ("libc+vdso", r"libc\.so|vdso|libpthread"),
               ("uvloop/libuv", r"uvloop|libuv|loop\.cpython"), ("C server", r"epoll_echo")]
PERF_HZ = 2000


def switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            pass
    return total


def watch(tool: str, pid: int, seconds: float, out: Path):
    """Run `tool` on `pid` for `seconds`; return what to print, given the requests per second."""
    if tool == "strace":
        proc = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid)], stderr=subprocess.PIPE, text=True)
        time.sleep(seconds)
        proc.send_signal(signal.SIGINT)
        table = proc.communicate(timeout=30)[1]
        return lambda rps: "\n".join(line for line in table.splitlines() if "attached" not in line
                                     and "detached" not in line)
    if tool == "py-spy":
        subprocess.run([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                        str(pid), "-d", str(int(seconds)), "-r", "500", "-f", "raw", "-o", str(out)],
                       capture_output=True, timeout=seconds + 60)
        by_line, total = collections.Counter(), 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            by_line[stack.split(";")[-1]] += int(count)
            total += int(count)
        return lambda rps: "\n".join(f"{100 * n / total:5.1f} %  {where}" for where, n in by_line.most_common(15))
    if tool == "perf":
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", str(PERF_HZ), "-p", str(pid), "-o", str(out),
                        "--", "sleep", str(seconds)], capture_output=True, timeout=seconds + 60)
        table = subprocess.run(["perf", "report", "-i", str(out), "--no-children", "--sort", "dso", "-n", "--stdio"],
                               capture_output=True, text=True, timeout=120).stdout
        groups = collections.Counter()
        for line in table.splitlines():
            found = re.match(r"\s+[\d.]+%\s+(\d+)\s+(.*)", line)
            if found:
                group = next((name for name, pattern in PERF_GROUPS if re.search(pattern, found[2])), "other")
                groups[group] += int(found[1])
        per_request = lambda rps, n: n / PERF_HZ / (rps * seconds) * 1e6  # noqa: E731
        return lambda rps: (f"total {per_request(rps, sum(groups.values())):.2f} us/request: " + ", ".join(
            f"{name} {per_request(rps, n):.2f}" for name, n in groups.most_common()))
    if tool == "split":
        before, started = user_system(pid), time.monotonic()
        time.sleep(seconds)
        after, elapsed = user_system(pid), time.monotonic() - started
        return lambda rps: (f"user {(after[0] - before[0]) / (rps * elapsed) * 1e6:.2f} us/request, "
                            f"system {(after[1] - before[1]) / (rps * elapsed) * 1e6:.2f} us/request")
    before, started = switches(pid), time.monotonic()
    time.sleep(seconds)
    count, elapsed = switches(pid) - before, time.monotonic() - started
    return lambda rps: f"{count / (rps * elapsed):.2f} context switches per request"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", help="a model name, or C epoll, asyncio Protocol, uvloop Protocol, ...")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, from: {', '.join(TOOLS)}")
    parser.add_argument("--connections", "-c", type=int, default=100)
    parser.add_argument("--size", "-s", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--stock-malloc", action="store_true", help="leave glibc's malloc thresholds alone")
    parser.add_argument("--ref", type=Path, default=None,
                        help="folder with a built epoll_echo and loadgen (default: build benchmarks/c with make yardsticks)")
    args = parser.parse_args()
    ref, how = find_reference(args.ref)
    if ref is None:
        print(f"needs the C load generator: {how}")
        return 2
    specs = {spec.name: spec for spec in catalogue(ref, MODELS)}
    if args.server not in specs:
        print(f"unknown server {args.server!r}; one of: {', '.join(specs)}")
        return 2
    for tool in args.tools.split(","):
        if tool in ("strace", "py-spy", "perf") and not (shutil.which(tool) or (Path(sys.executable).parent / tool).exists()):
            print(f"== {tool}: not installed, skipped")
            continue
        server = start(specs[args.server], args.connections, {SERVER_CPU}, {} if args.stock_malloc else MALLOC_ENV)
        try:
            load = subprocess.Popen([str(ref / "loadgen"), "-p", str(server.port), "-c", str(args.connections),
                                     "-s", str(args.size), "-t", str(args.seconds + 2), "-w", "0"],
                                    stdout=subprocess.PIPE, text=True,
                                    preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}))
            time.sleep(1.0)
            with tempfile.TemporaryDirectory() as scratch:
                report = watch(tool, server.pid, args.seconds, Path(scratch) / "py-spy.txt")
            rps = json.loads(load.communicate(timeout=args.seconds + 60)[0])["rps"]
        finally:
            stop(server)
        print(f"== {tool}: {args.server}, {args.connections} connections x {args.size} B, {rps:,.0f} req/s "
              f"over the whole run")
        print(report(rps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
