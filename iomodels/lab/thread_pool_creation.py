"""Every request on a new connection (connect, send 64 bytes, read the echo, close), from 1, 10 and
100 concurrent clients, against the three blocking servers: `threaded` starts a thread for every
connection, `forking` a whole process, `threadpool` hands it to one of 4 threads started once.
The servers' CPU time and context switches come from their own accounting (getrusage, which keeps
the totals of threads and children that already exited), divided by the requests they served.
What the pool saves is the creation and teardown of a thread or process per client."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt, medians, sweep
from iomodels.lab.verdicts import Compare, Rule, from_rows

TITLE = "Thread pools save thread creation"
SECTION = "1.1"
CLAIM = ("A thread pool reduces how often threads are created and destroyed, keeps a reasonable number "
         "of them and reuses idle ones for new work.")
SCALES = {"tiny": {"counts": (1, 4), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10, 100), "duration": 0.7, "warmup": 0.2},
          "full": {"counts": (1, 10, 100), "duration": 5.0, "warmup": 1.0}}
MODELS = ("threaded", "forking", "threadpool")
POOLED = "threadpool: server CPU per request"
RULE = Rule(tuple(Compare(POOLED, "less", f"{name}: server CPU per request", margin=0.1, unit=" µs")
                  for name in ("threaded", "forking")),
            words="with the most clients, each on a new connection per request, threadpool's server CPU per "
                  "request is at least 10 % lower than threaded's and than forking's")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = ctx.models(record, MODELS)
    repeat = [(model, max(p["counts"])) for model in names]
    for model, count, row in sweep(ctx, TITLE, names, p["counts"], "client", repeat=repeat,
                                   connect_per_request=True, duration=p["duration"], warmup=p["warmup"]):
        record.rows.append({"model": model, "clients": count, **row})


def judge(record):
    top = max((row["clients"] for row in record.rows), default=0)
    verdict, text = RULE.decide({f"{name}: server CPU per request": from_rows(
        record.rows, "server_cpu_per_request_us", model=name, clients=top) for name in MODELS})
    started = medians(record.rows_for(clients=top), "model")
    text = f"{top} clients: {text}; threads or processes started per request: " + ", ".join(
        f"{row['model']} {fmt((row['threads_started_per_request'] or 0) + (row['processes_started_per_request'] or 0))}"
        for row in started)
    return verdict, text


def plots(record):
    return plotting.by_count(medians(record.rows, "model", "clients"), "clients", "client", (
        ("requests_per_s", "Requests per second, a new connection each", "requests per second"),
        ("server_cpu_per_request_us", "Server CPU per request", "microseconds"),
        ("ctx_switches_per_request", "Server context switches per request", "switches")))
