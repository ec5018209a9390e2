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
from iomodels.lab.measuring import medians, per, sweep
from iomodels.lab.verdicts import Compare, Rule, from_rows

TITLE = "Asynchronous I/O: the kernel copies, then notifies"
SECTION = "1.4"
CLAIM = ("With asynchronous I/O the call returns at once; the kernel waits for the data, copies it "
         "into the user's memory, and then notifies the process that the operation is complete.")
SCALES = {"tiny": {"counts": (1, 4), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10), "duration": 1.0, "warmup": 0.3},
          "full": {"counts": (1, 10, 100), "duration": 5.0, "warmup": 1.0}}
MODELS = ("io_uring", "epoll", "asyncio")
RULE = Rule((
    Compare("io_uring: completions per request", "at_least", 1),
    Compare("io_uring: io_uring_enter per request", "less", "epoll: system calls per request (wait + recv + send)",
            margin=0.1),
), words="at the largest connection count, every io_uring request ends in a completion (≥ 1 per request), "
         "with at least 10 % fewer system calls per request than epoll's wait + recv + send")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = ctx.models(record, MODELS)
    repeat = [(model, max(p["counts"])) for model in ("io_uring", "epoll")]
    for model, count, row in sweep(ctx, TITLE, names, p["counts"], "connection", repeat=repeat,
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
    verdict, text = RULE.decide({
        "io_uring: completions per request": from_rows(record.rows, "completions_per_request", model="io_uring",
                                                       connections=top),
        "io_uring: io_uring_enter per request": from_rows(record.rows, "syscalls_per_request", model="io_uring",
                                                          connections=top),
        "epoll: system calls per request (wait + recv + send)": from_rows(
            record.rows, "syscalls_per_request", model="epoll", connections=top)})
    batched = from_rows(record.rows, "requests_per_submit", model="io_uring", connections=top)
    if batched:
        text += f"; {top} connections: io_uring served {batched.text()} requests per io_uring_enter"
    return verdict, text


def plots(record):
    return plotting.by_count(medians(record.rows, "model", "connections"), "connections", "connection", (
        ("syscalls_per_request", "System calls per request (io_uring: io_uring_enter; others: wait + recv + send)",
         "calls per request"),
        ("requests_per_wakeup", "Requests served per wake-up", "requests per wake-up")))
