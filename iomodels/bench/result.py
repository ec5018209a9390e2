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
from iomodels.bench.payload import describe_byte

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
    worker_system_cpu: list[float] = field(default_factory=list)  # the kernel's part of worker_cpu
    warmup_requests: int = 0
    connect_errors: int = 0
    protocol_errors: int = 0
    lost: int = 0
    idle_lost: int = 0
    server_cpu: float | None = None
    server_rss_bytes: int | None = None
    server_cpu_per_request_us: float | None = None
    send_lag_us: dict[str, float] | None = None
    warmup_mismatches: int = 0
    first_mismatch: str | None = None
    partial: bool = False  # interrupted (Ctrl-C): what was measured until then
    latency_spectrum_us: list[dict] = field(default_factory=list)
    intervals: list[dict] = field(default_factory=list)
    about: dict = field(default_factory=dict)  # tool version, time, machine, options
    warnings: list[str] = field(default_factory=list)
    # The intervals with their LatencyHistograms, for --hdr-log; not part of to_dict().
    interval_histograms: list[dict] = field(default_factory=list, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Every reply was right (warm-up included), nothing failed, and something was measured."""
        return self.errors == 0 and self.mismatches == 0 and self.warmup_mismatches == 0 and self.requests > 0

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "interval_histograms"}


def merge(options: dict, ready: list[dict], done: list[dict], client_extra_cpu: float,
          server: dict | None, notes: list[str], intervals: list[dict] | None = None) -> Result:
    """One Result from the workers' reports (`done`), their connect phase (`ready`) and the parent's
    own measurements; `options` holds the arguments of the run; `intervals` is merge_intervals(done)."""
    intervals = merge_intervals(done) if intervals is None else intervals
    histogram = LatencyHistogram()
    for report in done:
        histogram.merge_encoded(report["histogram"])
    total = {key: sum(report[key] for report in done)
             for key in ("requests", "warmup_requests", "mismatches", "warmup_mismatches", "protocol_errors",
                         "lost", "idle_lost")}
    connect_errors = sum(report["connect_errors"] for report in ready) + sum(r["connect_errors"] for r in done)
    rps = sum(r["requests"] / r["window_s"] for r in done if r["window_s"] > 0)
    bps = sum(r["bytes"] / r["window_s"] for r in done if r["window_s"] > 0)
    by_index = sorted(done, key=lambda r: r["index"])
    worker_cpu = [round(r["cpu"], 3) for r in by_index]
    cut_in_warmup = all(report.get("cut_in_warmup") for report in done)
    partial = any(r.get("partial") for r in done)
    warnings = list(notes)
    if cut_in_warmup:
        warnings.insert(0, "PARTIAL: interrupted (Ctrl-C) during the warm-up: nothing was measured")
    elif partial:
        warnings.insert(0, "PARTIAL: interrupted (Ctrl-C): these are the results measured until then")
    for index, cpu in enumerate(worker_cpu):
        if cpu > SATURATED:
            warnings.append(f"bench worker {index} used {cpu:.0%} of a core: the numbers may measure the "
                            f"client, not the server (more --workers, or fewer connections per worker)")
    first_mismatch = _first_mismatch(done)
    if first_mismatch:
        warnings.insert(0, f"{total['mismatches'] + total['warmup_mismatches']:,} of "
                           f"{total['requests'] + total['warmup_requests']:,} replies were not the request uppercased "
                           f"(first: {first_mismatch}): is this an uppercase-echo server?")
    warnings += _failure_notes(ready, done)
    if not total["requests"] and not cut_in_warmup:
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
        duration_s=round(max(r["window_s"] for r in done), 3) if partial else options["duration"],
        warmup_s=options["warmup"], workers=len(done),
        connect_per_request=options["connect_per_request"],
        client_cpu=round(sum(worker_cpu) + client_extra_cpu, 3), worker_cpu=worker_cpu,
        worker_system_cpu=[round(r["system_cpu"], 3) for r in by_index],
        warmup_requests=total["warmup_requests"], connect_errors=connect_errors,
        protocol_errors=total["protocol_errors"], lost=total["lost"], idle_lost=total["idle_lost"],
        send_lag_us=lag, warmup_mismatches=total["warmup_mismatches"], first_mismatch=first_mismatch,
        partial=partial, latency_spectrum_us=histogram.spectrum_us(),
        intervals=[{key: value for key, value in row.items() if key != "histogram"} for row in intervals],
        warnings=warnings, interval_histograms=intervals)
    if server is not None:
        result.server_cpu = round(server["cpu"], 3)
        result.server_rss_bytes = server["rss"]
        if result.requests:
            result.server_cpu_per_request_us = round(server["cpu_seconds"] / result.requests * 1e6, 2)
    return result


def merge_intervals(done: list[dict]) -> list[dict]:
    """The workers' time series added up, interval by interval (they share one grid): each row has
    start_s, end_s, requests, requests_per_s, errors, mismatches, p50_us, p99_us and its histogram."""
    rows = []
    for number in range(max((len(r.get("intervals", [])) for r in done), default=0)):
        parts = [r["intervals"][number] for r in done if number < len(r["intervals"])]
        histogram = LatencyHistogram()
        for part in parts:
            histogram.merge_encoded(part["histogram"])
        start, end = parts[0]["start_s"], max(part["end_s"] for part in parts)
        p50, p99 = histogram.percentiles_us([50.0, 99.0])
        rows.append({"start_s": round(start, 3), "end_s": round(end, 3), "requests": histogram.count,
                     "requests_per_s": round(histogram.count / (end - start), 1) if end > start else 0.0,
                     "errors": sum(p["errors"] for p in parts), "mismatches": sum(p["mismatches"] for p in parts),
                     "p50_us": p50, "p99_us": p99, "histogram": histogram})
    return rows


def _first_mismatch(done: list[dict]) -> str | None:
    for report in sorted(done, key=lambda r: r["index"]):
        first = report.get("first_mismatch")
        if first:
            return (f"connection {first['connection']}, request {first['request']}, byte {first['byte']}: "
                    f"expected {describe_byte(first['expected'])}, got {describe_byte(first['got'])}")
    return None


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
    reasons: dict[str, int] = {}
    for report in done:
        for reason, count in report.get("protocol_reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    notes += [f"{count} x protocol error: {reason}" for reason, count in sorted(reasons.items())]
    return notes


def _lag_summary(done: list[dict]) -> dict[str, float] | None:
    lags = sorted(lag for report in done for lag in report["lag_ns"])
    if not lags:
        return None
    return {"p99": round(lags[int(0.99 * (len(lags) - 1))] / 1000, 1), "max": round(lags[-1] / 1000, 1)}
