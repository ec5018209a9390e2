"""The same closed-loop load (each connection sends 64 bytes, waits for the echo, sends again) with
1 and then 10 connections, against `threaded` (a thread sleeping in `recv()` per connection) and
the multiplexers `select` and `epoll`. With so few connections the multiplexer's extra step
(wait for readiness, then `recv()`) buys nothing, while the threaded server goes straight from
`recv()` to `send()`: the tutorial warns that multiplexing may then be no faster, and even slower.
Throughput is requests per second over the measured window; latency is per request, as the
client saw it."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt, plural, sweep
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "With few connections, multiplexing is not faster"
SECTION = "1.3"
CLAIM = ("If the number of connections is not high, a select/epoll server is not necessarily faster "
         "than a multi-threaded blocking server, and may even have higher latency.")
SCALES = {"tiny": {"counts": (1, 10), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10), "duration": 2.0, "warmup": 0.5},
          "full": {"counts": (1, 10), "duration": 8.0, "warmup": 1.0}}
MODELS = ("threaded", "select", "epoll")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    for model, count, row in sweep(ctx, TITLE, ctx.models(record, MODELS), p["counts"], "connection",
                                   duration=p["duration"], warmup=p["warmup"]):
        record.rows.append({"model": model, "connections": count, **row})


def judge(record):
    """Holds if, at some connection count, threaded is at least as fast as a multiplexer, in
    throughput or in median latency."""
    found, parts = [], []
    for count in sorted({row["connections"] for row in record.rows}):
        rows = {row["model"]: row for row in record.rows_for(connections=count)}
        threaded = rows.pop("threaded", None)
        if threaded is None or not rows:
            continue
        found += [threaded["requests_per_s"] >= mux["requests_per_s"] or threaded["p50_us"] <= mux["p50_us"]
                  for mux in rows.values()]
        parts.append(f"{plural(count, 'connection')}: " + ", ".join(
            f"{name} {fmt(row['requests_per_s'])} req/s (p50 {fmt(row['p50_us'])} µs)"
            for name, row in [("threaded", threaded), *rows.items()]))
    if not found:
        return UNKNOWN, "needs threaded and select or epoll"
    rule = " (holds if threaded matches a multiplexer's throughput or median latency at some count)"
    return (HOLDS if any(found) else FAILS), "; ".join(parts) + rule


def plots(record):
    return plotting.by_count(record.rows, "connections", "connection", (("requests_per_s", "Throughput", "requests per second"),
                                  ("p50_us", "Median latency", "microseconds"),
                                  ("p99_us", "99th percentile latency", "microseconds")))
