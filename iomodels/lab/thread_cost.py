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
from iomodels.lab.measuring import fmt, medians, memory_guard, plural, series
from iomodels.lab.verdicts import Compare, Rule, from_rows, samples

TITLE = "Threads cost per connection"
SECTION = "1.1"
CLAIM = ("Answering hundreds or thousands of connections with processes or threads takes a lot of "
         "system resources.")
SCALES = {"tiny": {"counts": (3, 20)}, "quick": {"counts": (10, 100, 1000)},
          "full": {"counts": (10, 100, 1000, 3000)}}
MODELS = ("threaded", "forking", "threadpool", "epoll")
DECIDING = ("threaded", "forking", "epoll")  # the models the rule compares: repeated at the largest count
RULE = Rule((
    Compare("threaded: threads", "at_least", "connections", margin=0.1),
    Compare("forking: processes", "at_least", "connections", margin=0.1),
    Compare("threaded: memory", "more", "epoll: memory", margin=0.5, unit=" MiB"),
    Compare("forking: memory", "more", "epoll: memory", margin=0.5, unit=" MiB"),
), words="at the largest count, threaded runs a thread and forking a process for at least 90 % of the "
         "connections, and each needs at least 1.5× epoll's memory (PSS)")


def measure(ctx, record) -> None:
    """Every count once per model; the largest (which decides) `ctx.repeats` times, interleaved."""
    counts = ctx.params(SCALES)["counts"]
    names = ctx.models(record, MODELS)
    ctx.begin(TITLE, len(names) * (len(counts) + ctx.repeats - 1))
    reached = {}
    for model in names:
        previous = None
        for count in counts:
            ctx.step(f"{TITLE}: {model}, {count:,} connections")
            reason = memory_guard(previous, count)
            if reason:
                record.notes.append(f"{model}: {count:,} connections not tried: {reason}")
                break
            previous = _one(ctx, model, count)
            record.rows.append({**previous, "run": 0})
            reached[model] = count
    for run in range(1, ctx.repeats):
        for model in names:
            if reached.get(model) == counts[-1] and model in DECIDING:
                ctx.step(f"{TITLE}: {model}, {counts[-1]:,} connections (run {run + 1})")
                record.rows.append({**_one(ctx, model, counts[-1]), "run": run})


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
            "memory_mib": round(now.pss_bytes / 2**20, 1), "rss_mib": round(now.rss_bytes / 2**20, 1),
            "memory_per_connection_kib": round((now.pss_bytes - base.pss_bytes) / 1024 / max(connected, 1), 1),
            "threads": now.threads, "processes": now.processes,
            "ctx_switches": now.ctx_switches - base.ctx_switches,
            "cpu_ms": round(1000 * (now.cpu_s - base.cpu_s), 1), "setup_s": round(setup, 2),
            "error": crowd.error,
        }


def judge(record):
    top = max((row["connections"] for row in record.rows), default=0)
    at_top = [row for row in record.rows if row["connections"] == top]
    verdict, text = RULE.decide({
        "connections": samples([top]) if top else None,
        "threaded: threads": from_rows(at_top, "threads", model="threaded"),
        "forking: processes": from_rows(at_top, "processes", model="forking"),
        **{f"{name}: memory": from_rows(at_top, "memory_mib", model=name) for name in ("threaded", "forking", "epoll")},
    })
    pool = medians([row for row in at_top if row["model"] == "threadpool"], "model")
    if pool:
        text += f"; threadpool held its {plural(pool[0]['threads'], 'thread')} and answered {fmt(pool[0]['answered'])}"
    return verdict, f"{fmt(top)} connections: {text}"


def plots(record):
    rows = medians(record.rows, "model", "connections")
    return [
        plotting.lines("Server memory (PSS of all its processes) by connections",
                       series(rows, "memory_mib", "connections"),
                       "connections", "MiB (log)", logx=True, logy=True),
        plotting.lines("Threads, counted over all the server's processes", series(rows, "threads", "connections"),
                       "connections", "threads (log)", logx=True, logy=True),
        plotting.lines("Context switches while connecting and answering once",
                       series(rows, "ctx_switches", "connections"), "connections", "context switches (log)",
                       logx=True, logy=True),
    ]
