"""The same callers (threads of the lab, each sending 64-byte requests back to back) against one
`epoll` server, two ways: a new TCP connection for every request (connect, send, read the echo,
close), or through `iomodels.client.pool.ConnectionPool`, which keeps a few connections open and lends
them out. CPU is counted on both sides: each caller thread's own CPU time (getrusage per thread)
and the server's. Then the pool is kept at 4 connections while the callers grow to 8 and 16: a
caller that finds all 4 busy waits for one to come back, and the pool's own record of each
checkout's wait gives the percentiles. A pool saves the set-up and tear-down of connections; its
size is where callers start to queue. The callers are Python threads: the GIL lets one run at a
time, so fewer of them find the pool empty than the callers of a multi-core client would."""

from __future__ import annotations

import resource
import threading
import time

from iomodels.lab import clients, plotting
from iomodels.lab.measuring import fmt, percentiles, per
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN
from iomodels.lab.servers import delta

TITLE = "Connection pools save connection set-up"
SECTION = "1.1"
CLAIM = ("A connection pool keeps connections cached and reuses them, reducing the system cost of "
         "creating and closing them.")
SCALES = {"tiny": {"callers": 2, "window": 0.3, "crowds": (2, 4)},
          "quick": {"callers": 4, "window": 1.5, "crowds": (4, 8, 16)},
          "full": {"callers": 4, "window": 5.0, "crowds": (4, 8, 16, 64)}}
PAYLOAD = b"x" * 64


def measure(ctx, record) -> None:
    from iomodels.client.pool import ConnectionPool  # another part of the project: imported when used

    p = ctx.params(SCALES)
    if not ctx.models(record, ["epoll"]):
        return
    ctx.begin(TITLE, 2 + len(p["crowds"]))
    with ctx.server("epoll") as server:
        ctx.step(f"{TITLE}: a new connection per request")
        record.rows.append({"mode": "new connection", "callers": p["callers"], "pool_size": None,
                            **_load(server, p["callers"], p["window"], None)})
        for callers in (p["callers"], *p["crowds"][1:]):
            ctx.step(f"{TITLE}: pool of {p['crowds'][0]}, {callers} callers")
            with ConnectionPool(server.host, server.port, max_size=p["crowds"][0], acquire_timeout=30.0) as pool:
                row = _load(server, callers, p["window"], pool)
                waits = [seconds * 1e6 for seconds in pool.stats.wait_times]
                row.update({f"wait_{key}_us": value for key, value in percentiles(waits).items()},
                           waited_percent=round(100 * pool.stats.waits / max(len(waits), 1), 2),
                           connections_created=pool.stats.created)
            record.rows.append({"mode": "pool", "callers": callers, "pool_size": p["crowds"][0], **row})


def _load(server, callers: int, window: float, pool) -> dict:
    """`callers` threads send requests for `window` s; latency, throughput, CPU on both sides."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    cpu = [0.0] * callers
    errors = [0] * callers
    end = time.monotonic() + window

    def caller(index: int) -> None:
        own = resource.getrusage(resource.RUSAGE_THREAD)
        done, count = latencies[index], 0
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                if pool is None:
                    count += 1
                    # Numbered across callers, so clients.connect spreads them over source addresses.
                    with clients.connect(server.address, index=count * callers + index) as sock:
                        sock.sendall(PAYLOAD)
                        reply = clients.wait_reply(sock, PAYLOAD, 10.0)
                    ok = reply is not None
                else:
                    ok = pool.request(PAYLOAD) == PAYLOAD.upper()
            except OSError:
                ok = False
            if ok:
                done.append((time.perf_counter() - started) * 1e6)
            else:
                errors[index] += 1
        now = resource.getrusage(resource.RUSAGE_THREAD)
        cpu[index] = now.ru_utime + now.ru_stime - own.ru_utime - own.ru_stime

    before = server.counters()
    threads = [threading.Thread(target=caller, args=(i,), name=f"lab-caller-{i}") for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counted = delta(before, server.counters())
    everything = [value for samples in latencies for value in samples]
    requests = len(everything)
    return {"requests": requests, "requests_per_s": round(requests / window, 1), "errors": sum(errors),
            **{f"latency_{key}_us": value for key, value in percentiles(everything).items()},
            "client_cpu_per_request_us": _us(per(sum(cpu), requests)),
            "server_cpu_per_request_us": _us(per(counted["cpu_user_s"] + counted["cpu_system_s"], requests)),
            "server_accepts": counted["accepts"]}


def _us(seconds):
    return None if seconds is None else round(seconds * 1e6, 1)


def _total(row) -> float:
    return (row["client_cpu_per_request_us"] or 0) + (row["server_cpu_per_request_us"] or 0)


def judge(record):
    fresh = record.rows_for(mode="new connection")
    pooled = [row for row in record.rows_for(mode="pool") if row["callers"] == (fresh[0]["callers"] if fresh else 0)]
    if not fresh or not pooled:
        return UNKNOWN, "needs the epoll model and the connection pool"
    fresh, pooled = fresh[0], pooled[0]
    cheaper = _total(pooled) < _total(fresh) and pooled["requests_per_s"] > fresh["requests_per_s"]
    deciding = (f"{fresh['callers']} callers: new connection per request {fmt(fresh['requests_per_s'])} req/s, "
                f"{fmt(_total(fresh))} µs CPU/request (client + server); pool of {pooled['pool_size']}: "
                f"{fmt(pooled['requests_per_s'])} req/s, {fmt(_total(pooled))} µs")
    crowded = max(record.rows_for(mode="pool"), key=lambda row: row["callers"])
    if crowded["callers"] > crowded["pool_size"]:
        deciding += (f"; {crowded['callers']} callers on {crowded['pool_size']} connections: "
                     f"{fmt(crowded['waited_percent'])}% of requests waited for one, p99 "
                     f"{fmt(crowded['wait_p99_us'])} µs, longest {fmt(crowded['wait_max_us'])} µs")
    return (HOLDS if cheaper else FAILS), deciding


def plots(record):
    first = [row for row in record.rows if row["callers"] == record.rows[0]["callers"]]
    labels = [row["mode"] for row in first]
    pooled = record.rows_for(mode="pool")
    return [
        plotting.grouped_bars("CPU per request, client + server", labels,
                              {"client": [row["client_cpu_per_request_us"] or 0 for row in first],
                               "server": [row["server_cpu_per_request_us"] or 0 for row in first]}, "microseconds"),
        plotting.bars("Requests per second", labels, [row["requests_per_s"] for row in first], "requests per second",
                      colors=[plotting.PALETTE[i] for i in range(len(first))]),
        plotting.grouped_bars(f"Waiting for a free connection (pool of {pooled[0]['pool_size']})" if pooled else "",
                              [f"{row['callers']} callers" for row in pooled],
                              {name: [row.get(f"wait_{name}_us", 0) for row in pooled]
                               for name in ("p99", "p999", "max")}, "microseconds (log)", log=True),
    ]
