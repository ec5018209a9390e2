"""The lab opens 10, 100, then 1,000 connections to a fresh server, sends one request on each, and
reads the server's process tree: resident memory, threads, processes, and the context switches it
took to get there. A thread (`threaded`) or a process (`forking`) per connection makes every one of
these grow with the number of clients; a fixed pool (`threadpool`) keeps its threads but answers
only as many clients as it has threads; one `epoll` loop holds them all in one thread, and what
grows is a little kernel memory per socket. Memory is the proportional set size (PSS) summed over
the server's processes: a page shared by n processes counts 1/n in each, so the pages `forking`'s
children share with their parent are not counted once per child (summed RSS is in the raw numbers)."""

from __future__ import annotations

import time

from iomodels.lab import clients, plotting
from iomodels.lab.measuring import fmt, memory_guard, plural, series
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "Threads cost per connection"
SECTION = "1.1"
CLAIM = ("Answering hundreds or thousands of connections with processes or threads takes a lot of "
         "system resources.")
SCALES = {"tiny": {"counts": (3, 20)}, "quick": {"counts": (10, 100, 1000)},
          "full": {"counts": (10, 100, 1000, 3000)}}
MODELS = ("threaded", "forking", "threadpool", "epoll")


def measure(ctx, record) -> None:
    counts = ctx.params(SCALES)["counts"]
    names = ctx.models(record, MODELS)
    ctx.begin(TITLE, len(names) * len(counts))
    for model in names:
        previous = None
        for count in counts:
            ctx.step(f"{TITLE}: {model}, {count} connections")
            reason = memory_guard(previous, count)
            if reason:
                record.notes.append(f"{model}: {count} connections not tried: {reason}")
                continue
            previous = _one(ctx, model, count)
            record.rows.append(previous)


def _one(ctx, model: str, count: int) -> dict:
    with ctx.server(model) as server:
        base = server.figures()
        started = time.monotonic()
        with clients.Crowd(server.address, count) as crowd:
            answered = crowd.ping_all(5.0 + count / 100)
            setup = time.monotonic() - started
            time.sleep(0.2)  # let the last threads or children settle before reading
            now = server.figures()
            connected = crowd.opened
        return {
            "model": model, "connections": count, "connected": connected, "answered": answered,
            "memory_mb": round(now.pss_bytes / 2**20, 1), "rss_mb": round(now.rss_bytes / 2**20, 1),
            "memory_per_connection_kb": round((now.pss_bytes - base.pss_bytes) / 1024 / max(connected, 1), 1),
            "threads": now.threads, "processes": now.processes,
            "ctx_switches": now.ctx_switches - base.ctx_switches,
            "cpu_ms": round(1000 * (now.cpu_s - base.cpu_s), 1), "setup_s": round(setup, 2),
            "error": crowd.error,
        }


def judge(record):
    top = max((row["connections"] for row in record.rows), default=0)
    at_top = {row["model"]: row for row in record.rows if row["connections"] == top}
    if not {"threaded", "forking", "epoll"} <= set(at_top):
        return UNKNOWN, "needs threaded, forking and epoll measured at the same count"
    threaded, forking, epoll = at_top["threaded"], at_top["forking"], at_top["epoll"]
    grows = threaded["threads"] >= 0.9 * top and forking["processes"] >= 0.9 * top
    heavier = min(threaded["memory_mb"], forking["memory_mb"]) > epoll["memory_mb"]
    parts = [f"{name} {plural(row['threads'], 'thread')} in {plural(row['processes'], 'process', 'processes')}, "
             f"{fmt(row['memory_mb'])} MB, {plural(row['ctx_switches'], 'context switch', 'context switches')}"
             for name, row in at_top.items()]
    pool = at_top.get("threadpool")
    if pool:
        parts.append(f"(threadpool answered {fmt(pool['answered'])} of {fmt(top)})")
    return (HOLDS if grows and heavier else FAILS), f"at {fmt(top)} connections: " + "; ".join(parts)


def plots(record):
    rows = record.rows
    return [
        plotting.lines("Server memory (PSS of all its processes) by connections",
                       series(rows, "memory_mb", "connections"),
                       "connections", "MB (log)", logx=True, logy=True),
        plotting.lines("Threads, counted over all the server's processes", series(rows, "threads", "connections"),
                       "connections", "threads (log)", logx=True, logy=True),
        plotting.lines("Context switches while connecting and answering once",
                       series(rows, "ctx_switches", "connections"), "connections", "context switches (log)",
                       logx=True, logy=True),
    ]
