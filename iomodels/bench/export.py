"""What a run leaves behind besides the table: `--hdr-log`, `--csv`, and the `about` of `--json`.

The HdrHistogram interval log is the format wrk2, HdrHistogram's own tools and its plotters
(HistogramLogAnalyzer, hdrhistogram.github.io's plotter) read and merge: one compressed histogram
per INTERVAL of the measured window, values in nanoseconds, the maximum in milliseconds, readable
with hdrh's `HistogramLogReader`. The CSV is the same time series as plain numbers.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
from importlib import metadata

from hdrh.log import HistogramLogWriter

CSV_COLUMNS = ["start_s", "end_s", "requests", "requests_per_s", "errors", "mismatches", "p50_us", "p99_us"]


def version() -> str:
    try:
        return metadata.version("iomodels")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def about(options: dict, measure_start_epoch: float) -> dict:
    """Which tool, when, on what machine, with which options: enough to compare two runs later."""
    shown = {key: (str(value) if key == "size" else value) for key, value in options.items()}
    return {
        "tool": "iomodels bench", "version": version(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "measure_start_epoch": round(measure_start_epoch, 6),
        "machine": {"hostname": platform.node(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "kernel": platform.release(), "python": platform.python_version()},
        "options": shown,
    }


def write_hdr_log(path: str, intervals: list[dict], measure_start_epoch: float) -> None:
    """One interval histogram per line, timestamps in seconds from the measured window's start."""
    with open(path, "w", encoding="utf-8") as f:
        writer = HistogramLogWriter(f)
        writer.output_comment("Logged by iomodels bench: latency in nanoseconds; interval max in ms")
        writer.output_log_format_version()
        when = datetime.datetime.fromtimestamp(measure_start_epoch, datetime.timezone.utc).isoformat()
        writer.output_comment(f"[StartTime: {measure_start_epoch:.3f} (seconds since epoch), {when}]")
        writer.output_legend()
        for row in intervals:
            # The line as HdrHistogram's Java writer formats it. hdrh's own writer floors the max to
            # whole milliseconds, so that a loopback interval's max would read 0.
            payload = row["histogram"].to_hdr().encode().decode("ascii")
            f.write(f"{row['start_s']:.3f},{row['end_s'] - row['start_s']:.3f},"
                    f"{row['histogram'].max_ns / 1e6:.3f},{payload}\n")


def write_csv(path: str, intervals: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        out.writeheader()
        out.writerows(intervals)
