"""How much strace slows a system call, measured: the figures are only as honest as this number.

A child Python process makes N non-blocking recv() calls on an empty socket (each returns EAGAIN:
exactly the spinner's call), once on its own and once under strace with the flags the traces use;
the time per call is compared, in interleaved rounds (the machine may be shared). A traced call
costs two stops of the process and two context switches to strace and back: much more than the
call itself. That inflates every short call (and the spinner's count of calls, which falls), but
not a wait: a call asleep in the kernel sleeps as long traced or not, which the page checks by
comparing the traced wait with the scenario's silence.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from iomodels.trace import strace

LOOP = """
import socket, sys, time
a, b = socket.socketpair()
a.setblocking(False)
n = int(sys.argv[1])
start = time.perf_counter()
for _ in range(n):
    try:
        a.recv(1)
    except BlockingIOError:
        pass
print((time.perf_counter() - start) / n * 1e6)
"""


def _per_call_us(prefix: list[str], calls: int) -> float:
    out = subprocess.run([*prefix, sys.executable, "-c", LOOP, str(calls)], capture_output=True, text=True,
                         timeout=120, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(calls: int = 5000, rounds: int = 3) -> dict:
    """Median µs per recv() untraced and traced, over interleaved rounds."""
    path = strace.check_tracer()
    traced_prefix = [path, *strace.FLAGS, "-o", "/dev/null"]
    plain, traced = [], []
    for _ in range(rounds):
        plain.append(_per_call_us([], calls))
        traced.append(_per_call_us(traced_prefix, calls))
    untraced_us, traced_us = statistics.median(plain), statistics.median(traced)
    return {"calls": calls, "rounds": rounds, "untraced_us_per_call": round(untraced_us, 2),
            "traced_us_per_call": round(traced_us, 2), "slowdown": round(traced_us / untraced_us, 1)}
