"""The result of a run: what every worker counted, merged, and what it means.

`Result` is both the Python API's return value and, through `to_dict()`, the `--json` output.
Rates are per measured second of each worker's own window, summed over workers. CPU figures are
CPU seconds per wall second (1.0 = one core busy): `client_cpu` for the bench's own processes,
`server_cpu` for the server's process tree over the same window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from iomodels.bench.histogram import LatencyHistogram

SATURATED = 0.9  # a worker busier than this may be measuring itself
LATE_MS = 1.0  # open loop: sends this late (p99) mean the client, not the server, set the pace


@dataclass
class Result:
    host: str
    port: int
    requests: int
    requests_per_s: float
    bytes_per_s: float
    latency_us: dict[str, float]
    errors: int
    mismatches: int
    connections: int
    idle: int
    size: int | list[int]
    pipeline: int
    rate: float | None
    duration_s: float
    warmup_s: float
    workers: int
    connect_per_request: bool
    client_cpu: float
    worker_cpu: list[float]
    warmup_requests: int = 0
    connect_errors: int = 0
    protocol_errors: int = 0
    lost: int = 0
    idle_lost: int = 0
    server_cpu: float | None = None
    server_rss_bytes: int | None = None
    server_cpu_per_request_us: float | None = None
    send_lag_us: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every reply was right, nothing failed, and something was measured."""
        return self.errors == 0 and self.mismatches == 0 and self.requests > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def merge(options: dict, ready: list[dict], done: list[dict], client_extra_cpu: float,
          server: dict | None, notes: list[str]) -> Result:
    """One Result from the workers' reports (`done`), their connect phase (`ready`) and the parent's
    own measurements; `options` holds the arguments of the run."""
    histogram = LatencyHistogram()
    for report in done:
        histogram.merge_encoded(report["histogram"])
    total = {key: sum(report[key] for report in done)
             for key in ("requests", "warmup_requests", "mismatches", "protocol_errors", "lost", "idle_lost")}
    connect_errors = sum(report["connect_errors"] for report in ready) + sum(r["connect_errors"] for r in done)
    rps = sum(r["requests"] / r["window_s"] for r in done if r["window_s"] > 0)
    bps = sum(r["bytes"] / r["window_s"] for r in done if r["window_s"] > 0)
    worker_cpu = [round(r["cpu"], 3) for r in sorted(done, key=lambda r: r["index"])]
    warnings = list(notes)
    for index, cpu in enumerate(worker_cpu):
        if cpu > SATURATED:
            warnings.append(f"bench worker {index} used {cpu:.0%} of a core: the numbers may measure the "
                            f"client, not the server (more --workers, or fewer connections per worker)")
    warnings += _failure_notes(ready, done)
    if not total["requests"]:
        warnings.append("no request completed in the measured window: is the server answering?")
    lag = _lag_summary(done)
    if lag and lag["p99"] > LATE_MS * 1000:
        warnings.append(f"open loop: 1 % of the sends left more than {lag['p99'] / 1000:.1f} ms late (at worst "
                        f"{lag['max'] / 1000:.1f} ms): the client fell behind its schedule, so part of the "
                        f"latency is the client's")
    result = Result(
        host=options["host"], port=options["port"], requests=total["requests"],
        requests_per_s=round(rps, 1), bytes_per_s=round(bps, 1), latency_us=histogram.summary_us(),
        errors=connect_errors + total["protocol_errors"] + total["lost"] + total["idle_lost"],
        mismatches=total["mismatches"], connections=options["connections"], idle=options["idle"],
        size=options["size"].to_json(), pipeline=options["pipeline"], rate=options["rate"],
        duration_s=options["duration"], warmup_s=options["warmup"], workers=len(done),
        connect_per_request=options["connect_per_request"],
        client_cpu=round(sum(worker_cpu) + client_extra_cpu, 3), worker_cpu=worker_cpu,
        warmup_requests=total["warmup_requests"], connect_errors=connect_errors,
        protocol_errors=total["protocol_errors"], lost=total["lost"], idle_lost=total["idle_lost"],
        send_lag_us=lag, warnings=warnings)
    if server is not None:
        result.server_cpu = round(server["cpu"], 3)
        result.server_rss_bytes = server["rss"]
        if result.requests:
            result.server_cpu_per_request_us = round(server["cpu_seconds"] / result.requests * 1e6, 2)
    return result


def _failure_notes(ready: list[dict], done: list[dict]) -> list[str]:
    notes = []
    for key, kind in (("connect_reasons", "connect failed"), ("lost_reasons", "lost")):
        reasons: dict[str, int] = {}
        for report in (*ready, *done):
            for reason, count in report.get(key, {}).items():
                reasons[reason] = reasons.get(reason, 0) + count
        notes += [f"{count} x {kind}: {reason}" for reason, count in sorted(reasons.items())]
    exhausted = sum(report.get("ports_exhausted", 0) for report in done)
    if exhausted:
        sources = max(report["source_addresses"] for report in done)
        notes.append(f"ephemeral ports ran out {exhausted} times (EADDRNOTAVAIL): each closed connection "
                     f"holds its client port in TIME_WAIT for 60 s; moved on to loopback source "
                     f"addresses up to 127.0.0.{sources}")
    protocol = sum(report["protocol_errors"] for report in done)
    if protocol:
        notes.append(f"{protocol} x protocol error: the server sent more bytes than it was sent")
    return notes


def _lag_summary(done: list[dict]) -> dict[str, float] | None:
    lags = sorted(lag for report in done for lag in report["lag_ns"])
    if not lags:
        return None
    return {"p99": round(lags[int(0.99 * (len(lags) - 1))] / 1000, 1), "max": round(lags[-1] / 1000, 1)}
