"""The same closed-loop load against `io_uring`, `epoll` and `asyncio`, with 1 and then 10
connections, and the servers' own counters divided by the requests they served. A readiness model
(epoll, and asyncio on top of it) makes three kinds of system call per request: one to wait for
readiness (shared by every request that became ready together), one `recv()` to copy the data in,
one `send()`. The completion model hands the kernel whole operations, "receive into this buffer",
"send these bytes", prepared in a shared queue and published with one `io_uring_enter()` per turn
of its loop, which also waits: when a completion arrives the bytes are already in the buffer. The
more requests arrive together, the more each submit and each wake-up carries."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt, per, sweep
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "Asynchronous I/O: the kernel copies, then notifies"
SECTION = "1.4"
CLAIM = ("With asynchronous I/O the call returns at once; the kernel waits for the data, copies it "
         "into the user's memory, and then notifies the process that the operation is complete.")
SCALES = {"tiny": {"counts": (1, 4), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10), "duration": 1.5, "warmup": 0.3},
          "full": {"counts": (1, 10, 100), "duration": 5.0, "warmup": 1.0}}
MODELS = ("io_uring", "epoll", "asyncio")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    for model, count, row in sweep(ctx, TITLE, ctx.models(record, MODELS), p["counts"], "connection",
                                   duration=p["duration"], warmup=p["warmup"]):
        # io_uring_enter both submits and waits; a readiness model waits, then recv()s and send()s.
        if model == "io_uring":
            calls = row["submits_per_request"]
        else:
            calls = sum(row[f"{name}_per_request"] or 0 for name in ("wait_calls", "recv_calls", "send_calls"))
        record.rows.append({
            "model": model, "connections": count, "syscalls_per_request": round(calls, 3),
            "requests_per_wakeup": _inverse(row["wait_calls_per_request"]),
            "requests_per_submit": _inverse(row["submits_per_request"]), **row})


def _inverse(value):
    result = per(1, value)
    return None if result is None else round(result, 2)


def judge(record):
    top = max((row["connections"] for row in record.rows), default=0)
    rows = {row["model"]: row for row in record.rows_for(connections=top)}
    if "io_uring" not in rows or "epoll" not in rows:
        return UNKNOWN, "needs io_uring and epoll (io_uring may be unavailable here: see skipped models)"
    uring, epoll = rows["io_uring"], rows["epoll"]
    completed = (uring["completions_per_request"] or 0) >= 1
    fewer = uring["syscalls_per_request"] < epoll["syscalls_per_request"]
    parts = [f"{top} connections: io_uring {fmt(uring['syscalls_per_request'])} io_uring_enter per request "
             f"({fmt(uring['requests_per_submit'])} requests per submit, {fmt(uring['completions_per_request'])} "
             f"completions per request)"]
    parts += [f"{name} {fmt(row['syscalls_per_request'])} system calls per request (wait + recv + send), "
              f"{fmt(row['requests_per_wakeup'])} requests per wake-up"
              for name, row in rows.items() if name != "io_uring"]
    return (HOLDS if completed and fewer else FAILS), "; ".join(parts)


def plots(record):
    return plotting.by_count(record.rows, "connections", "connection", (
        ("syscalls_per_request", "System calls per request (io_uring: io_uring_enter; others: wait + recv + send)",
         "calls per request"),
        ("requests_per_wakeup", "Requests served per wake-up", "requests per wake-up")))
