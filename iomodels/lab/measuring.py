"""Measurements several experiments share: a server at rest with one idle client, a server under
the bench's load, and how numbers are written in verdicts.

Per-request figures divide the server's counters by the requests it served in the same interval,
counted from its own `bytes_in` (every request is `size` bytes): the counters and the bench's
window do not cover exactly the same seconds, the server's bytes do.
"""

from __future__ import annotations

import math
import statistics
import time

import psutil

from iomodels import procstats
from iomodels.lab import clients
from iomodels.lab.servers import LabServer, ServerFailed, delta

# Counters worth a "per second" or "per request" figure, in the order the report shows them.
CALLS = ("wait_calls", "empty_wakeups", "events", "recv_calls", "recv_eagain", "send_calls",
         "submits", "completions", "signals", "loop_iterations", "threads_started", "processes_started")
# Seconds for a server to go back to waiting after answering, before a window opens.
SETTLE = 0.2


def fmt(value, digits: int = 3) -> str:
    """A number for people, three significant digits at most: 1,234 / 12.3 / 0.0123 / 20 / n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    text = f"{value:,.{decimals}f}"
    # Significant digits, not padding: 0.06, not 0.0600; 1.5, not 1.50.
    return text.rstrip("0").rstrip(".") if "." in text else text


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 process', '21 processes'."""
    return f"{fmt(count)} {noun if count == 1 else many or noun + 's'}"


def per(numerator, denominator) -> float | None:
    return None if not denominator else numerator / denominator


def at_rest(ctx, model: str, window: float, *flags: str) -> dict:
    """One client connected and answered once, then silent for `window` s: what does the server do?"""
    with ctx.server(model, *flags) as server, clients.connect(server.address) as sock:
        if clients.ask(sock, b"hello", 5.0) is None:
            raise ServerFailed(f"{model} did not answer its only client")
        time.sleep(SETTLE)  # let the server finish the turn that answered, or it lands in the window
        before = server.counters()
        with procstats.Window(server.pid) as cpu:
            time.sleep(window)
        after = server.counters()
    counted = delta(before, after)
    seconds = counted["uptime_s"] or cpu.seconds
    row = {"model": model, "window_s": round(cpu.seconds, 2), "cpu_percent": round(cpu.cpu_percent, 2),
           "ctx_switches_per_s": round(cpu.ctx_switches / cpu.seconds, 1)}
    row.update({f"{name}_per_s": round(counted[name] / seconds, 2) for name in CALLS})
    return row


def under_load(server: LabServer, size: int = 64, **bench_args) -> dict:
    """Run the bench against `server`; its numbers plus the server's counters per request."""
    from iomodels import bench  # imported late: the lab runs without it

    before = server.counters()
    try:
        result = bench.run(server.host, server.port, size=size, server_pid=server.pid, **bench_args)
    except bench.BenchError as exc:  # a run that could not happen: once more, then it is the answer
        retried = str(exc)
        result = bench.run(server.host, server.port, size=size, server_pid=server.pid, **bench_args)
    else:
        retried = ""
    after = server.counters()
    counted = delta(before, after)
    served = counted["bytes_in"] / size
    row = {
        "requests": result.requests, "requests_per_s": result.requests_per_s,
        **{f"{key}_us": value for key, value in result.latency_us.items()},
        "errors": result.errors, "mismatches": result.mismatches,
        "client_cpu": result.client_cpu, "server_cpu": result.server_cpu,
        # The bench's own CPU (its workers) per request: what the client side pays.
        "client_cpu_per_request_us": _round(per(result.client_cpu, result.requests_per_s), 1e6),
        "server_cpu_per_request_us": _round(per(counted["cpu_user_s"] + counted["cpu_system_s"], served), 1e6),
        "ctx_switches_per_request": _round(per(counted["ctx_voluntary"] + counted["ctx_involuntary"], served)),
        "server_rss_mib": round((result.server_rss_bytes or 0) / 2**20, 1),
        "served": int(served),
    }
    row.update({f"{name}_per_request": _round(per(counted[name], served)) for name in CALLS})
    if result.errors:
        row.update(connect_errors=result.connect_errors, lost=result.lost, idle_lost=result.idle_lost,
                   protocol_errors=result.protocol_errors)
    if retried:
        row["retried_after"] = retried
    if result.warnings:
        row["warnings"] = "; ".join(result.warnings)
    return row


def sweep(ctx, title: str, names: list[str], counts, noun: str, repeat: tuple = (), **bench_args):
    """For each count, each model: a fresh server under the bench's load with `count` connections.
    Then, for the (model, count) pairs in `repeat` (those that decide the verdict), `ctx.repeats - 1`
    more rounds, interleaved between the models. Yields (model, count, row); row["run"] numbers the
    round (0 for the first)."""
    pairs = [(0, model, count) for count in counts for model in names]
    pairs += [(run, model, count) for run in range(1, ctx.repeats) for model, count in repeat if model in names]
    for run, model, count in ctx.each(title, pairs, lambda pair: f"{pair[1]}, {plural(pair[2], noun)}"
                                      + (f" (run {pair[0] + 1})" if pair[0] else "")):
        with ctx.server(model) as server:
            yield model, count, {"run": run, **under_load(server, connections=count, **bench_args)}


def medians(rows: list[dict], *by: str) -> list[dict]:
    """One row per distinct value of the `by` keys, in first-seen order: each number the median over
    the repeats (rows that differ only in "run"), anything else as first seen. For plots."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in by), []).append(row)
    out = []
    for group in groups.values():
        merged = dict(group[0])
        for key, value in merged.items():
            numbers = [r[key] for r in group if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
            if key != "run" and len(numbers) == len(group) and len(group) > 1:
                merged[key] = statistics.median(numbers)
        merged.pop("run", None)
        out.append(merged)
    return out


def percentiles(samples: list[float]) -> dict:
    """p50/p90/p99/p999/max of `samples` (nearest rank), rounded; zeros when there are none."""
    ordered = sorted(samples)
    quantiles = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}
    if not ordered:
        return {**dict.fromkeys(quantiles, 0), "max": 0}
    found = {name: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) for name, q in quantiles.items()}
    return {**found, "max": round(ordered[-1], 1)}


def memory_guard(previous: dict | None, count: int, share: float = 0.5) -> str | None:
    """Why not to try `count` connections, if the memory per connection measured at a smaller
    count (`previous` row: connections, memory_mib) says they would need more than `share` of the
    memory available now; None if it looks safe (or nothing was measured yet)."""
    if not previous or not previous.get("connections"):
        return None
    per_connection = previous["memory_mib"] * 2**20 / previous["connections"]
    needed, available = per_connection * count, psutil.virtual_memory().available
    if needed <= share * available:
        return None
    return (f"would need about {needed / 2**30:.1f} GiB ({per_connection / 2**20:.2f} MiB per connection at "
            f"{previous['connections']:,}), more than {100 * share:g} % of the {available / 2**30:.1f} GiB available")


def _round(value, scale: float = 1.0):
    return None if value is None else round(value * scale, 4)


def series(rows: list[dict], key: str, x: str, names: list[str] | None = None) -> dict:
    """{model: (xs, ys)} for a line plot of `key` against `x`."""
    names = names or list(dict.fromkeys(row["model"] for row in rows))
    out = {}
    for name in names:
        points = sorted((row[x], row[key]) for row in rows if row["model"] == name and row.get(key) is not None)
        if points:
            out[name] = ([p[0] for p in points], [p[1] for p in points])
    return out
