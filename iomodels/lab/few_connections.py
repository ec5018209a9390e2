"""The same closed-loop load (each connection sends 64 bytes, waits for the echo, sends again) with
1 and then 10 connections, against `threaded` (a thread sleeping in `recv()` per connection) and
the multiplexers `select` and `epoll`. With so few connections the multiplexer's extra step
(wait for readiness, then `recv()`) buys nothing, while the threaded server goes straight from
`recv()` to `send()`: the tutorial warns that multiplexing may then be no faster, and even slower.
Throughput is requests per second over the measured window; latency is per request, as the
client saw it."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import medians, sweep
from iomodels.lab.verdicts import Compare, Rule, from_rows

TITLE = "With few connections, multiplexing is not faster"
SECTION = "1.3"
CLAIM = ("If the number of connections is not high, a select/epoll server is not necessarily faster "
         "than a multi-threaded blocking server, and may even have higher latency.")
SCALES = {"tiny": {"counts": (1, 10), "duration": 0.3, "warmup": 0.1},
          "quick": {"counts": (1, 10), "duration": 1.0, "warmup": 0.3},
          "full": {"counts": (1, 10), "duration": 5.0, "warmup": 1.0}}
MODELS = ("threaded", "select", "epoll")
# One connection decides: where the multiplexer's extra step has nothing to share.
DECIDING = 1
RULE = Rule((
    Compare("epoll: requests/s, 1 connection", "at_most", "threaded: requests/s, 1 connection", margin=0.1),
), words="with one connection, epoll serves at most 10 % more requests per second than threaded "
         "(it is not faster)")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = ctx.models(record, MODELS)
    repeat = [(model, DECIDING) for model in ("threaded", "epoll")]
    for model, count, row in sweep(ctx, TITLE, names, p["counts"], "connection", repeat=repeat,
                                   duration=p["duration"], warmup=p["warmup"]):
        record.rows.append({"model": model, "connections": count, **row})


def judge(record):
    verdict, text = RULE.decide({
        f"{name}: requests/s, 1 connection": from_rows(record.rows, "requests_per_s", model=name, connections=DECIDING)
        for name in ("epoll", "threaded")})
    latency = {name: from_rows(record.rows, "p50_us", model=name, connections=DECIDING) for name in ("epoll", "threaded")}
    if all(latency.values()):
        text += f"; median latency: epoll {latency['epoll'].text(' µs')}, threaded {latency['threaded'].text(' µs')}"
    return verdict, text


def plots(record):
    return plotting.by_count(medians(record.rows, "model", "connections"), "connections", "connection", (
        ("requests_per_s", "Throughput", "requests per second"),
        ("p50_us", "Median latency", "microseconds"),
        ("p99_us", "99th percentile latency", "microseconds")))
