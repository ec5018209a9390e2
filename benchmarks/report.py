"""benchmarks/run.py's results as ratios, the issue's targets, a plot, and BENCHMARKS.md sections.

Every ratio is taken inside one turn (one round of one cell: the same minutes of the same
machine), then the median over rounds is reported with the range it came from. The C server runs
several times a turn; each other server is set against the mean of the C runs just before and
just after it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

from iomodels.lab import machine as lab_machine

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "benchmarks" / "cpu_per_request.svg"
C = "C epoll"
# Written by run.py; every other section of BENCHMARKS.md (the load generator's, the notes on
# profiles and multi-core) is kept as it is.
SECTIONS = ("## Machine and method", "## Results", "## Targets")
TARGET_CELL = (100, 64, 1)  # (connections, message size, depth: messages in flight per connection)
# (model, reference, at most, what it means): each checked as the median of per-turn ratios.
TARGETS = [
    ("epoll", C, 1.10, "a plain selectors loop measures ~1.18x: beat it"),
    ("epoll-et", C, 1.10, "as epoll"),
    ("io_uring", "epoll", 1.00, "completion I/O no slower than readiness I/O"),
    ("io_uring:oneshot", "epoll", 1.00, "as io_uring, with one receive submitted per request"),
    ("uvloop", C, 1.10, "no overhead over a bare uvloop Protocol server"),
    ("uvloop", "uvloop Protocol", 1.00, "(the same target, against the bare server itself)"),
    ("asyncio", "asyncio Protocol", 1.00, "no overhead over the bare stdlib server"),
    ("threaded", "socketserver", 1.00, "no overhead over socketserver.ThreadingTCPServer"),
    ("threadpool", "socketserver", 1.00, "as threaded"),
    ("poll", "epoll", 1.15, "within 1.15x of epoll at 100 connections"),
    ("select", "epoll", 1.15, "within 1.15x of epoll at 100 connections"),
]


def cell_of(row: dict) -> tuple[int, int, int]:
    """A row's cell: (connections, size, depth); rows from before depths were measured are at 1."""
    return row["connections"], row["size"], row.get("depth", 1)


def cell_name(cell: dict | tuple) -> str:
    connections, size, depth = cell_of(cell) if isinstance(cell, dict) else cell
    return f"{connections} x {size} B" + (f" at depth {depth}" if depth != 1 else "")


def machine() -> dict:
    described = lab_machine.describe()
    return {"summary": lab_machine.summary(described), **described}


# --- ratios ---------------------------------------------------------------------------------

def _turns(rows: list[dict]) -> dict:
    """(connections, size, depth) -> round -> [rows in the order they ran]."""
    turns = defaultdict(lambda: defaultdict(list))
    for row in sorted(rows, key=lambda r: r["seq"]):
        if "failed" not in row and row.get("cpu_per_request_us"):
            turns[cell_of(row)][row["round"]].append(row)
    return turns


def _reference_value(turn: list[dict], row: dict, reference: str, key: str) -> float | None:
    """The reference's figure to set `row` against: for the C server, the mean of its runs just
    before and just after `row` in the turn; for any other, its run in the same turn."""
    if reference != C:
        found = [r[key] for r in turn if r["server"] == reference]
        return statistics.fmean(found) if found else None
    before = [r[key] for r in turn if r["server"] == C and r["seq"] < row["seq"]][-1:]
    after = [r[key] for r in turn if r["server"] == C and r["seq"] > row["seq"]][:1]
    bracket = before + after if row["server"] != C else [row[key]]
    return statistics.fmean(bracket) if bracket else None


def ratios(rows: list[dict], server: str, reference: str, key: str = "cpu_per_request_us") -> dict:
    """(connections, size, depth) -> per-turn ratios of `key`, server / reference."""
    found = defaultdict(list)
    for cell, rounds in _turns(rows).items():
        for turn in rounds.values():
            for row in turn:
                if row["server"] == server:
                    base = _reference_value(turn, row, reference, key)
                    if base:
                        found[cell].append(row[key] / base)
                        break  # the C server runs several times a turn: its own ratio is 1 once
    return dict(found)


def servers_in(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["server"] for row in rows))


def median_of(rows: list[dict], server: str, cell: tuple, key: str) -> float | None:
    values = [row[key] for row in rows if row["server"] == server and cell_of(row) == cell
              and "failed" not in row and row.get(key) is not None]
    return statistics.median(values) if values else None


# --- tables ---------------------------------------------------------------------------------

def _spread(values: list[float], digits: int = 2) -> str:
    middle = f"{statistics.median(values):.{digits}f}"
    return middle if len(values) == 1 else f"{middle} ({min(values):.2f}-{max(values):.2f})"


def _verdict(excess: float, some_round_met: bool) -> str:
    """`excess`: the median over the target (1.0 = exactly on it)."""
    if excess <= 1.0:
        return "met"
    return f"**not met** (by {100 * (excess - 1):.1f} %" + (", inside the spread of the rounds)" if some_round_met else ")")


def _matrix(rows: list[dict], reference: str, size: int, depth: int, key: str, title: str) -> list[str]:
    connections = sorted({row["connections"] for row in rows if cell_of(row)[1:] == (size, depth)})
    pipelined = "ping-pong" if depth == 1 else f"{depth} messages in flight per connection"
    lines = [f"{title}, {size} B messages, {pipelined}:", "",
             "| server | " + " | ".join(f"{c} conn." for c in connections) + " |",
             "|---|" + "---|" * len(connections)]
    for server in servers_in(rows):
        found = ratios(rows, server, reference, key)
        cells = [f"{statistics.median(found[(c, size, depth)]):.2f}" if (c, size, depth) in found else "n/a"
                 for c in connections]
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return lines + [""]


def _detail(rows: list[dict], reference: str, cell: tuple) -> list[str]:
    lines = [f"All servers at {cell_name(cell)}: CPU per request and throughput as "
             f"ratios to {reference} (median over rounds, range in brackets); absolute figures for "
             f"orientation only (medians; this machine was shared).", "",
             f"| server | CPU/request x {reference} | req/s x {reference} | CPU/request (us) | req/s | "
             f"p50 (us) | p99 (us) | errors |", "|---|---|---|---|---|---|---|---|"]
    for server in servers_in(rows):
        cpu = ratios(rows, server, reference).get(cell)
        rps = ratios(rows, server, reference, "rps").get(cell)
        if not cpu:
            continue
        errors = sum(row.get("errors", 0) for row in rows if row["server"] == server
                     and cell_of(row) == cell and "failed" not in row)
        lines.append(f"| {server} | {_spread(cpu)} | {_spread(rps)} | "
                     f"{median_of(rows, server, cell, 'cpu_per_request_us'):.2f} | "
                     f"{median_of(rows, server, cell, 'rps'):,.0f} | {median_of(rows, server, cell, 'p50_us'):.0f} | "
                     f"{median_of(rows, server, cell, 'p99_us'):.0f} | {errors} |")
    return lines + [""]


def targets(rows: list[dict]) -> list[str]:
    lines = [f"Measured at {cell_name(TARGET_CELL)}: median of the per-round ratios "
             f"of CPU per request (range over rounds in brackets).", "",
             "| model | against | target | measured | verdict | what it means |", "|---|---|---|---|---|---|"]
    for model, reference, limit, meaning in TARGETS:
        found = ratios(rows, model, reference).get(TARGET_CELL)
        if not found:
            lines.append(f"| {model} | {reference} | <= {limit:.2f}x | not measured | - | {meaning} |")
            continue
        lines.append(f"| {model} | {reference} | <= {limit:.2f}x | {_spread(found, 3)} | "
                     f"{_verdict(statistics.median(found) / limit, min(found) <= limit)} | {meaning} |")
    best = _best_throughput(rows)
    if best:
        model, found = best
        verdict = _verdict(0.95 / statistics.median(found), max(found) >= 0.95)
        lines.append(f"| {model} (best req/s) | {C} | req/s >= 0.95x | {_spread(found, 3)} | {verdict} | "
                     f"throughput of the best model within 5 % of the C server's |")
    return lines + [""]


def _best_throughput(rows: list[dict]) -> tuple[str, list[float]] | None:
    """The model with the highest median req/s ratio to the C server, and its per-turn ratios."""
    candidates = []
    for server in {row["server"] for row in rows if row.get("kind") == "model"}:
        found = ratios(rows, server, C, "rps").get(TARGET_CELL)
        if found:
            candidates.append((statistics.median(found), server, found))
    return max(candidates)[1:] if candidates else None


# --- the plot -------------------------------------------------------------------------------

def plot(rows: list[dict], reference: str, path: Path = PLOT) -> Path | None:
    """One panel per message size: each server's CPU per request / the reference's, one marker per
    connection count, on a log scale (a ratio of 2 is as far above 1 as 0.5 is below it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
    except ImportError:
        return None
    rows = [row for row in rows if cell_of(row)[2] == 1]  # ping-pong only
    sizes = sorted({row["size"] for row in rows})
    connections = sorted({row["connections"] for row in rows})
    servers = [s for s in servers_in(rows) if s != reference]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(12, 4.5 * len(sizes)), squeeze=False)
    markers = "os^Dv"
    for ax, size in zip(axes[:, 0], sizes):
        for i, count in enumerate(connections):
            xs, ys = [], []
            for x, server in enumerate(servers):
                found = ratios(rows, server, reference).get((count, size, 1))
                if found:
                    xs.append(x + (i - (len(connections) - 1) / 2) * 0.12)
                    ys.append(statistics.median(found))
            ax.plot(xs, ys, markers[i % len(markers)], label=f"{count} conn.")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.10, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator([0.5, 0.75, 1, 1.1, 1.5, 2, 3, 5, 10, 20, 50, 100]))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(range(len(servers)))
        ax.set_xticklabels(servers, rotation=30, ha="right")
        ax.grid(axis="x", color="#eeeeee")
        ax.set_ylabel(f"CPU per request, x {reference}")
        ax.set_title(f"{size} B messages, ping-pong: median over rounds (1 = {reference}; dashed: 1.10)")
        ax.legend(fontsize="small", ncol=len(connections))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- BENCHMARKS.md --------------------------------------------------------------------------

def _sampler_agreement(rows: list[dict]) -> str:
    """How far the process-tree sampler is from the load generator's own reading of the server's
    main process, on servers that are one process (where both measure the same thing)."""
    gaps = sorted(abs(r["server_cpu_s"] / r["loadgen_server_cpu_s"] - 1) for r in rows
                  if r.get("loadgen_server_cpu_s") and "failed" not in r and r["server"] != "forking")
    if not gaps:
        return ""
    return (f" On single-process servers this agrees with the load generator's own reading of the server "
            f"(`-P`, the same window exactly) within {100 * statistics.median(gaps):.1f} % (median; 90th "
            f"percentile {100 * gaps[int(0.9 * (len(gaps) - 1))]:.1f} %).")


def _cells(run: dict) -> str:
    cells = run.get("cells", [])
    return f"all {len(cells)} cells" if len(cells) > 1 else (cells[0] if cells else "each cell")


def render(results: dict, plot_to: Path | None = PLOT) -> str:
    """BENCHMARKS.md's generated sections; the plot is drawn to `plot_to` (None: not drawn)."""
    rows = results["rows"]
    reference = C if results["reference"] else "asyncio Protocol"
    planes = sorted({cell_of(row)[1:] for row in rows}, key=lambda plane: (plane[1], plane[0]))
    m = results["machine"]
    runs = results["runs"]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(runs[0]["started"]))
    commands = [".venv/bin/python benchmarks/run.py" + (f" {run['command']}" if run["command"] else "") for run in runs]
    method = [
        SECTIONS[0], "",
        f"Measured {when} ({sum(run['seconds'] for run in runs) // 60} min) on: {m['summary']}; load average at "
        f"start {runs[0]['load_average_at_start']} (other sessions were running tests on the same two cores); "
        f"open files limit {m['open_files_limit']}; packages "
        + ", ".join(f"{name} {version}" for name, version in m["packages"].items()) + ".", "",
        f"Load generator: {results['load_generator']}"
        + (f" ({results['reference']})" if results["reference"] else
           " (the C reference was not available: only the Python servers were compared)") + ", "
        f"ping-pong (one message in flight per connection) unless a depth is given (that many in flight), "
        f"every reply checked byte for byte. "
        f"Server pinned to CPU {results['server_cpu']}, load generator to CPU {results['client_cpu']}; "
        + "; ".join(f"{run['rounds']} round{'' if run['rounds'] == 1 else 's'} of {_cells(run)} "
                    f"({run['warmup']:g} s warm-up + {run['duration']:g} s measured)" for run in runs)
        + "; the warm-up is 1 s per 250 connections when that is longer. Each round runs every server in turn, "
        + ("forwards then backwards, with the C server before, after and between every four of them: a server's "
           "ratio to C is against the mean of the two C runs that bracket it." if results["reference"] else
           f"forwards then backwards; ratios are to {reference} in the same round.")
        + " CPU per request = CPU seconds (utime + stime from "
        f"/proc/PID/stat, summed over the server's process tree, reaped children included, sampled every 0.1 s and "
        f"interpolated at the window's ends) over the measured window / requests completed in it."
        + _sampler_agreement(rows) + " Softirq time of loopback TCP is not charged to any process (it shows in "
        f"/proc/stat): the figures are the server's own CPU, user and system.", "",
        "```sh", *commands, "```", "",
        "Each server runs as (`taskset -c 0`): `epoll_echo --port 0 --port-file F`, "
        "`python benchmarks/baselines/{asyncio_echo.py [--uvloop] [--buffered], socketserver_echo.py, selectors_echo.py} 0`, "
        "`python -m iomodels serve --model M --port 0 --log-level warning` (`threadpool` with `--threads` = "
        "connections, so that every client is served; `io_uring:oneshot` adds `--uring-mode oneshot`); "
        + ("the load, `taskset -c 1 loadgen -p PORT -c C -s S -d DEPTH -t T -w W -P PID`. " if results["reference"] else
           "the load, `taskset -c 1 python -m iomodels bench 127.0.0.1:PORT -c C -s S --pipeline DEPTH --duration T -w W --workers 1 --json "
           "--server-pid PID`. ") + "Raw figures of every run: "
        "`benchmarks/results.json`."
        + (" Every server runs with " + ", ".join(f"`{k}={v}`" for k, v in results["malloc_env"].items())
           + ": glibc's default thresholds make a stdlib asyncio server pay mmap + munmap per read, or not, "
             "depending on its allocation history (see \"Where the time goes\"); fixed, every server is in the "
             "same regime. `--stock-malloc` leaves them alone." if results.get("malloc_env") else ""), ""]
    body = [SECTIONS[1], ""]
    for size, depth in planes:
        body += _matrix(rows, reference, size, depth, "cpu_per_request_us", f"CPU per request, x {reference}")
    for size, depth in planes:
        body += _matrix(rows, reference, size, depth, "rps", f"Requests per second, x {reference}")
    cell = TARGET_CELL if any(cell_of(r) == TARGET_CELL for r in rows) else cell_of(rows[0])
    body += _detail(rows, reference, cell)
    if plot_to is not None and plot(rows, reference, plot_to):
        body += [f"![CPU per request, x {reference}]({plot_to.relative_to(ROOT)})", ""]
    failed = [r for r in rows if "failed" in r or r.get("server_errors")]
    if failed:
        body += ["Runs that failed or logged a traceback:", ""]
        body += [f"- round {r['round'] + 1}, {r['server']}, {cell_name(r)}: "
                 f"{r.get('failed') or r['server_errors'].strip().splitlines()[-1]}" for r in failed] + [""]
    return "\n".join(method + body + [SECTIONS[2], ""] + targets(rows))


def replace_section(text: str, heading: str, new: str) -> str:
    start = text.find(heading + "\n")
    if start < 0:
        return text.rstrip("\n") + "\n\n" + new.rstrip("\n") + "\n"
    end = text.find("\n## ", start + len(heading))
    return text[:start] + new.rstrip("\n") + "\n" + ("" if end < 0 else text[end:])


def write(results: dict, text: str, path: Path = ROOT / "BENCHMARKS.md") -> Path:
    """Put each generated section in place of its old version; leave every other section alone."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    parts = text.split("\n## ")
    for part in parts:
        section = part if part.startswith("## ") else "## " + part
        current = replace_section(current, section.split("\n", 1)[0], section)
    path.write_text(current)
    return path
