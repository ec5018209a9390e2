"""Every request on a new connection (connect, send 64 bytes, read the echo, close), from 1, 10 and
100 concurrent clients, against the three blocking servers: `threaded` starts a thread for every
connection, `forking` a whole process, `threadpool` hands it to one of 4 threads started once.
The servers' CPU time and context switches come from their own accounting (getrusage, which keeps
the totals of threads and children that already exited), divided by the requests they served.
What the pool saves is the creation and teardown of a thread or process per client."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt, plural, sweep
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "Thread pools save thread creation"
SECTION = "1.1"
CLAIM = ("A thread pool reduces how often threads are created and destroyed, keeps a reasonable number "
         "of them and reuses idle ones for new work.")
SCALES = {"tiny": {"counts": (1, 4), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10, 100), "duration": 1.5, "warmup": 0.3},
          "full": {"counts": (1, 10, 100), "duration": 5.0, "warmup": 1.0}}
MODELS = ("threaded", "forking", "threadpool")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    for model, count, row in sweep(ctx, TITLE, ctx.models(record, MODELS), p["counts"], "client",
                                   connect_per_request=True, duration=p["duration"], warmup=p["warmup"]):
        record.rows.append({"model": model, "clients": count, **row})


def judge(record):
    verdicts, parts = [], []
    for count in sorted({row["clients"] for row in record.rows}):
        rows = {row["model"]: row for row in record.rows_for(clients=count)}
        pool = rows.pop("threadpool", None)
        if pool is None or not rows:
            continue
        cheaper = all(pool["server_cpu_per_request_us"] < row["server_cpu_per_request_us"] for row in rows.values())
        verdicts.append(cheaper)
        parts.append(f"{plural(count, 'client')}: threadpool {fmt(pool['server_cpu_per_request_us'])} µs CPU/request vs "
                     + ", ".join(f"{name} {fmt(row['server_cpu_per_request_us'])}" for name, row in rows.items()))
    if not verdicts:
        return UNKNOWN, "needs threadpool and threaded or forking"
    top = max(row["clients"] for row in record.rows)
    started = {row["model"]: row for row in record.rows_for(clients=top)}
    parts.append("threads/processes started per request: " + ", ".join(
        f"{name} {fmt((row['threads_started_per_request'] or 0) + (row['processes_started_per_request'] or 0))}"
        for name, row in started.items()))
    return (HOLDS if all(verdicts) else FAILS), "; ".join(parts)


def plots(record):
    return plotting.by_count(record.rows, "clients", "client", (
        ("requests_per_s", "Requests per second, a new connection each", "requests per second"),
        ("server_cpu_per_request_us", "Server CPU per request", "microseconds"),
        ("ctx_switches_per_request", "Server context switches per request", "switches")))
