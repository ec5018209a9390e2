"""A few active clients keep sending requests (the bench) while the lab holds 0, then 1,000, then
10,000 other connections open and silent, each answered once first so that the server really holds
it (from several 127.0.0.x source addresses when one would run out of ports). What matters is what the idle crowd costs the active clients and the server: does the
model still answer, how fast, with how much memory and how many threads? A thread or process per
connection pays for every idle client; a pool is full as soon as the idle clients outnumber its
threads; `select` cannot watch descriptors numbered 1024 or more; the event loops hold them all in
one thread. Where a model fails, the table says at what count and why, and larger counts are not
tried; a count whose memory, extrapolated from the previous one, would not fit is not tried
either. The blocking server is left out: it serves one client at a time (see the deaf server)."""

from __future__ import annotations

import resource
import time

from iomodels.serving import models
from iomodels.lab import clients, plotting
from iomodels.lab.measuring import fmt, memory_guard, plural, series, under_load
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN
from iomodels.lab.servers import ServerFailed

TITLE = "More connections, not faster ones"
SECTION = "1.3"
CLAIM = ("The advantage of select/epoll is not that a single connection is handled faster, but that "
         "many more connections can be handled.")
# absorb: seconds the server gets to connect and answer the idle crowd once.
SCALES = {"tiny": {"idle": (0, 20), "active": 2, "duration": 0.3, "warmup": 0.1, "absorb": 10},
          "quick": {"idle": (0, 1000, 10_000), "active": 4, "duration": 1.0, "warmup": 0.3, "absorb": 20},
          "full": {"idle": (0, 1000, 5000, 10_000, 18_000), "active": 4, "duration": 3.0, "warmup": 1.0,
                   "absorb": 300}}
# Keeping this share of its throughput without idle clients counts as "still serving well".
KEPT = 0.5


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = [name for name in ctx.models(record) if models.info(name).concurrent]
    if "blocking" in ctx.models(record, ["blocking"]):
        record.skipped.append({"model": "blocking", "reason": "serves one client at a time (see the deaf server)"})
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if max(p["idle"]) + p["active"] + 100 > hard:
        record.notes.append(f"RLIMIT_NOFILE's hard limit ({hard}) caps the connections one process may hold")
    ctx.begin(TITLE, len(names) * len(p["idle"]))
    for model in names:
        failed_at, previous = None, None
        for idle in p["idle"]:
            ctx.step(f"{TITLE}: {model}, {idle:,} idle")
            if failed_at is not None:
                continue
            reason = memory_guard(previous, idle + p["active"])
            if reason:
                record.rows.append({"model": model, "idle": idle, "ok": False, "tried": False, "reason": reason})
                failed_at = idle
                continue
            row = _one(ctx, model, idle, p)
            record.rows.append(row)
            previous = {"connections": idle + p["active"], "memory_mb": row.get("memory_mb", 0)}
            if not row["ok"]:
                failed_at = idle


def _one(ctx, model: str, idle: int, p: dict) -> dict:
    """Hold `idle` clients (each answered once, so the server really serves it), then load."""
    row = {"model": model, "idle": idle, "tried": True}
    started = time.monotonic()
    with ctx.server(model) as server, clients.Crowd(server.address, idle, deadline=p["absorb"]) as crowd:
        held = crowd.ping_all(timeout=max(1.0, p["absorb"] - (time.monotonic() - started)), quiet=3.0)
        figures = server.figures()
        row.update(idle_connected=crowd.opened, idle_answered=held, absorb_s=round(time.monotonic() - started, 2),
                   memory_mb=round(figures.pss_bytes / 2**20, 1), threads=figures.threads,
                   processes=figures.processes)
        try:
            counters = server.counters()
            if held == idle:
                row.update(under_load(server, connections=p["active"], duration=p["duration"], warmup=p["warmup"]))
                counters = server.counters()
        except (ServerFailed, OSError, RuntimeError) as exc:  # BenchError is a RuntimeError
            row.update(ok=False, reason=f"{type(exc).__name__}: {exc}")
            if not server.alive():
                row["reason"] = f"the server died: {server.last_error()}"
            return row
    row["ok"] = held == idle and row["errors"] == 0 and row["requests"] > 0
    if not row["ok"]:
        row["reason"] = _why(row, counters, crowd.error, p["active"])
    return row


def _why(row: dict, counters: dict, connect_error: str, active: int) -> str:
    idle, held = row["idle"], row["idle_answered"]
    if counters.get("rejected_fd_too_high"):
        return (f"refused {counters['rejected_fd_too_high']:,} connections whose descriptor was ≥ 1024 "
                f"(select's FD_SETSIZE)")
    if counters.get("accept_errors"):
        return f"accept() failed {counters['accept_errors']:,} times (out of descriptors or memory)"
    if connect_error:
        return f"the lab could not connect: {connect_error} (answered: {held:,})"
    if held < idle:
        return (f"only {held:,} of {idle:,} idle clients were answered in {row['absorb_s']:.0f} s (the server "
                f"had {plural(row['threads'], 'thread')} in {plural(row['processes'], 'process', 'processes')})")
    if row["requests"] == 0:
        return f"the {active} active clients got no reply while {idle:,} idle ones were held"
    return (f"{row['errors']:,} errors: {row.get('connect_errors', 0):,} failed connects, {row.get('lost', 0):,} "
            f"lost requests")


def judge(record):
    top = max((row["idle"] for row in record.rows), default=0)
    epoll = {row["idle"]: row for row in record.rows_for(model="epoll")}
    if 0 not in epoll or top not in epoll or top == 0:
        return UNKNOWN, "needs epoll measured without and with idle connections"
    base, crowded = epoll[0], epoll[top]
    kept = crowded.get("ok") and crowded["requests_per_s"] >= KEPT * base["requests_per_s"]
    parts = [f"epoll with {fmt(top)} idle: {fmt(crowded.get('requests_per_s'))} req/s "
             f"({fmt(base['requests_per_s'])} with none), {fmt(crowded.get('memory_mb'))} MB, "
             f"{plural(crowded.get('threads') or 0, 'thread')}"]
    costly = False
    for name in ("threaded", "forking", "threadpool", "select"):
        rows = {row["idle"]: row for row in record.rows_for(model=name)}
        failed = next((row for row in rows.values() if not row.get("ok")), None)
        if failed:
            costly = True
            parts.append(f"{name} failed at {fmt(failed['idle'])} idle: {failed['reason']}")
        elif top in rows and rows[top].get("memory_mb", 0) >= 2 * (crowded.get("memory_mb") or float("inf")):
            costly = True
            parts.append(f"{name} needed {fmt(rows[top]['memory_mb'])} MB, {plural(rows[top]['threads'], 'thread')}")
    verdict = HOLDS if kept and costly else FAILS
    return verdict, "; ".join(parts)


def plots(record):
    rows = [row for row in record.rows if row.get("ok")]
    return [
        plotting.lines("Active clients' throughput while idle connections are held",
                       series(rows, "requests_per_s", "idle"), "idle connections", "requests per second",
                       logx=True),
        plotting.lines("Active clients' 99th percentile latency", series(rows, "p99_us", "idle"),
                       "idle connections", "microseconds (log)", logx=True, logy=True),
        plotting.lines("Server memory (PSS) while they are held", series(rows, "memory_mb", "idle"),
                       "idle connections", "MB (log)", logx=True, logy=True),
    ]
