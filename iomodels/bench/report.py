"""What the user sees: a live progress line while it runs, then a table or one JSON object.

Everything but `--json`'s object goes to stderr, so `iomodels bench ... --json | jq` stays clean.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from iomodels.bench.result import Result


class LiveProgress:
    """One redrawn line: phase, elapsed time, current requests per second."""

    def __init__(self, enabled: bool):
        self.console = Console(stderr=True)
        self.live = None
        if enabled and self.console.is_terminal:
            self.live = Live(Text("connecting..."), console=self.console, auto_refresh=False, transient=True)
            self.live.start()

    def update(self, elapsed: float, total: float, phase: str, rps: float) -> None:
        if self.live is not None:
            line = f"{phase:<9} {elapsed:6.1f} / {total:.1f} s   {rps:>12,.0f} requests/s"
            self.live.update(Text(line), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} cores"


def _kernel_share(result: Result) -> str:
    busy = sum(result.worker_cpu)
    return f"; {sum(result.worker_system_cpu) / busy:.0%} of it in the kernel" if busy else ""


def table(result: Result) -> Table:
    if result.connect_per_request:
        mode = "connect per request" + (f", {result.rate:,.0f} new connections/s" if result.rate else "")
        active = f"at most {result.connections:,} open at once"
    else:
        mode = f"open loop, {result.rate:,.0f} requests/s" if result.rate else f"closed loop, pipeline {result.pipeline}"
        active = f"{result.connections:,} active"
    size = result.size if isinstance(result.size, int) else f"{result.size[0]}-{result.size[1]}"
    title = f"iomodels bench {result.host}:{result.port}{' (PARTIAL: interrupted)' if result.partial else ''}"
    if result.mismatches or result.warmup_mismatches:
        title += " (WRONG REPLIES: the figures below are not those of an uppercase-echo server)"
    grid = Table(title=title, show_header=False, title_justify="left")
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    rows = [
        ("mode", mode),
        ("connections", f"{active}, {result.idle:,} idle, {result.workers} worker(s)"),
        ("message size", f"{size} bytes"),
        ("measured", f"{result.duration_s:g} s after {result.warmup_s:g} s of warm-up"),
        ("requests", f"{result.requests:,}"),
        ("requests/s", f"{result.requests_per_s:,.0f}"),
        ("throughput", f"{result.bytes_per_s / 1e6:,.2f} MB/s each way"),
    ]
    rows += [(f"latency {name}", f"{value:,.1f} us") for name, value in result.latency_us.items()]
    if result.send_lag_us:
        lag = result.send_lag_us
        rows.append(("send lag p99 / max", f"{lag['p99']:,.1f} / {lag['max']:,.1f} us"))
    rows += [
        ("errors", f"{result.errors} ({result.connect_errors} connect, {result.lost} lost, "
                   f"{result.idle_lost} idle lost, {result.protocol_errors} protocol)"),
        ("mismatches", f"{result.mismatches:,}" + (f" (+{result.warmup_mismatches:,} in the warm-up)"
                                                  if result.warmup_mismatches else "")),
        ("client CPU", f"{_cpu(result.client_cpu)} (workers: {', '.join(f'{c:.2f}' for c in result.worker_cpu)}"
                       f"{_kernel_share(result)})"),
    ]
    if result.server_cpu is not None:
        rows += [("server CPU", _cpu(result.server_cpu)),
                 ("server CPU per request", "-" if result.server_cpu_per_request_us is None
                  else f"{result.server_cpu_per_request_us:.2f} us"),
                 ("server memory (peak RSS)", f"{(result.server_rss_bytes or 0) / 2**20:,.1f} MiB")]
    for name, value in rows:
        style = "red" if name in ("errors", "mismatches") and not value.startswith("0") else None
        grid.add_row(name, Text(value, style=style))
    return grid


def show(result: Result, as_json: bool) -> None:
    console = Console(stderr=True)
    for warning in result.warnings:
        console.print(f"[yellow]note:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        sys.stdout.flush()
    else:
        Console().print(table(result))
