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
from iomodels.lab.verdicts import Compare, Rule, from_rows, paired

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
# Median latency decides: on a shared machine throughput follows the CPU share each run got, while
# the time one request takes is the server's own path (recv -> send, or wait -> recv -> send).
RATIO = "epoll ÷ threaded: median latency, 1 connection, run by run"
RULE = Rule((Compare(RATIO, "at_least", 0.9),),
            words="with one connection, epoll's median latency is at least 90 % of threaded's, compared run by "
                  "run: the multiplexer is not faster (and may be slower)")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    names = ctx.models(record, MODELS)
    repeat = [(model, DECIDING) for model in ("threaded", "epoll")]
    for model, count, row in sweep(ctx, TITLE, names, p["counts"], "connection", repeat=repeat,
                                   duration=p["duration"], warmup=p["warmup"]):
        record.rows.append({"model": model, "connections": count, **row})


def judge(record):
    one = {"connections": DECIDING}
    verdict, text = RULE.decide({RATIO: paired(record.rows, "p50_us", {"model": "epoll", **one},
                                               {"model": "threaded", **one})})
    for key, label, unit in (("p50_us", "median latency", " µs"), ("requests_per_s", "requests/s", "")):
        measured = {name: from_rows(record.rows, key, model=name, connections=DECIDING) for name in ("epoll", "threaded")}
        if all(measured.values()):
            text += f"; {label}: epoll {measured['epoll'].text(unit)}, threaded {measured['threaded'].text(unit)}"
    return verdict, text


def plots(record):
    return plotting.by_count(medians(record.rows, "model", "connections"), "connections", "connection", (
        ("requests_per_s", "Throughput", "requests per second"),
        ("p50_us", "Median latency", "microseconds"),
        ("p99_us", "99th percentile latency", "microseconds")))
