"""Two ways to send the same 64-byte requests to one `epoll` server, from the load generator's
worker (a client fast enough not to be what is measured): a new TCP connection for every request
(connect, send, read the echo, close: `iomodels bench --connect-per-request`), or a few persistent
connections reused for request after request, which is what a connection pool gives its callers.
The two modes alternate, round after round. CPU is counted on both sides, the bench's worker and
the server, and divided by the requests served: what the pool saves is the handshake, the
accept, the socket set-up and the teardown, paid at both ends.

Then `iomodels.client.pool.ConnectionPool` itself, used by threads of the lab: 4 connections, and
callers growing from 4 to 16. A caller that finds all 4 busy waits for one to come back; the pool
hands a returned connection to the caller that has waited longest (first come, first served), so
however crowded, nobody waits much longer than the others. The pool's own record of each
checkout's wait gives the percentiles. (These callers are Python threads: they measure the pool's
fairness, not its speed, and run in a process of their own, away from the lab's other threads.)"""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt, medians, under_load
from iomodels.lab.verdicts import Compare, Rule, from_rows, samples

TITLE = "Connection pools save connection set-up"
SECTION = "1.1"
CLAIM = ("A connection pool keeps connections cached and reuses them, reducing the system cost of "
         "creating and closing them.")
SCALES = {"tiny": {"connections": 2, "duration": 0.3, "warmup": 0.1, "window": 0.3, "crowds": (2, 4)},
          "quick": {"connections": 4, "duration": 1.0, "warmup": 0.3, "window": 1.0, "crowds": (4, 8, 16)},
          "full": {"connections": 4, "duration": 5.0, "warmup": 1.0, "window": 5.0, "crowds": (4, 8, 16, 64)}}
MODES = {"new connection": True, "pooled": False}  # mode: connect per request?
# In the most crowded pool, the slowest caller's median request time may be this many times the
# median of all: with first-come-first-served hand-off every caller waits its turn alike (about 1×);
# a caller starved by barging waits far longer. Caller by caller, not the single longest wait: on a
# shared two-core machine that is whichever moment the scheduler paused the process.
FAIR = 3
RULE = Rule((
    Compare("pooled: requests/s", "more", "new connection: requests/s", margin=0.3),
    Compare("pooled: client CPU per request", "less", "new connection: client CPU per request", margin=0.2,
            unit=" µs"),
    Compare("pooled: server CPU per request", "less", "new connection: server CPU per request", margin=0.2,
            unit=" µs"),
    Compare("crowded pool: slowest caller's median request time ÷ all callers', run by run", "at_most", FAIR),
), words="persistent connections serve at least 30 % more requests per second than a new connection per "
         "request, with at least 20 % less CPU per request on the client and on the server; in the most "
         f"crowded pool, no caller's median request time exceeds {FAIR}× the median of all callers (nobody starves)")


def measure(ctx, record) -> None:
    from iomodels.lab import pool_callers  # the client side of the project: imported when used

    p = ctx.params(SCALES)
    if not ctx.models(record, ["epoll"]):
        return
    size = p["crowds"][0]
    steps = [(run, mode) for run in range(ctx.repeats) for mode in MODES]
    crowds = [(0, callers) for callers in p["crowds"]]
    crowds += [(run, p["crowds"][-1]) for run in range(1, ctx.repeats)]  # the most crowded decides
    ctx.begin(TITLE, len(steps) + len(crowds))
    with ctx.server("epoll") as server, pool_callers.runner() as child:
        for run, mode in steps:
            ctx.step(f"{TITLE}: {mode} (run {run + 1})")
            row = under_load(server, connections=p["connections"], connect_per_request=MODES[mode],
                             duration=p["duration"], warmup=p["warmup"])
            record.rows.append({"mode": mode, "run": run, "connections": p["connections"], **row})
        for run, callers in crowds:
            ctx.step(f"{TITLE}: ConnectionPool of {size}, {callers} callers" + (f" (run {run + 1})" if run else ""))
            row = child.submit(pool_callers.crowd, server.host, server.port, size, callers, p["window"]).result(
                timeout=60 + p["window"])
            record.rows.append({"mode": "ConnectionPool", "run": run, "callers": callers, "pool_size": size, **row})


def judge(record):
    figures = {}
    for mode in MODES:
        figures[f"{mode}: requests/s"] = from_rows(record.rows, "requests_per_s", mode=mode)
        for side in ("client", "server"):
            figures[f"{mode}: {side} CPU per request"] = from_rows(record.rows, f"{side}_cpu_per_request_us", mode=mode)
    crowds = record.rows_for(mode="ConnectionPool")
    if crowds:
        crowded = max(crowds, key=lambda row: row["callers"])
        most = record.rows_for(mode="ConnectionPool", callers=crowded["callers"])
        figures["crowded pool: slowest caller's median request time ÷ all callers', run by run"] = samples(
            row["slowest_caller_p50_us"] / row["latency_p50_us"] for row in most if row.get("latency_p50_us"))
    verdict, text = RULE.decide(figures)
    if crowds:
        text += (f" ({crowded['callers']} callers on {crowded['pool_size']} connections, "
                 f"{fmt(crowded['waited_percent'])} % of checkouts waited; median request time "
                 f"{from_rows(most, 'latency_p50_us').text(' µs')}, the longest single wait "
                 f"{from_rows(most, 'wait_max_us').text(' µs')}; requests per caller from "
                 f"{fmt(min(r['fewest_requests_by_a_caller'] for r in most))} to "
                 f"{fmt(max(r['most_requests_by_a_caller'] for r in most))})")
    return verdict, text


def plots(record):
    modes = medians([row for row in record.rows if row["mode"] in MODES], "mode")
    labels = [row["mode"] for row in modes]
    pooled = medians(record.rows_for(mode="ConnectionPool"), "callers")
    figures = [
        plotting.grouped_bars("CPU per request, client (the bench) and server", labels,
                              {"client": [row["client_cpu_per_request_us"] or 0 for row in modes],
                               "server": [row["server_cpu_per_request_us"] or 0 for row in modes]}, "microseconds"),
        plotting.bars("Requests per second", labels, [row["requests_per_s"] for row in modes], "requests per second",
                      colors=[plotting.PALETTE[i] for i in range(len(modes))]),
    ]
    if pooled:
        figures.append(plotting.grouped_bars(
            f"ConnectionPool of {pooled[0]['pool_size']}: waiting for a free connection",
            [f"{row['callers']} callers" for row in pooled],
            {name: [row.get(f"wait_{name}_us", 0) for row in pooled] for name in ("p50", "p99", "max")},
            "microseconds (log)", log=True))
    return figures
