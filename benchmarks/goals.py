"""The performance goals of issue 16, measured side by side in one run, into BENCHMARKS.md.

    .venv/bin/python benchmarks/goals.py [--rounds 5] [--duration 3] [--ref build/yardsticks] [--write]

The servers of the goals (the C epoll server, the epoll, epoll-et, uvloop and io_uring models in
both receive modes, the bare uvloop Protocol server, the plain selectors loop) each run pinned to
CPU 0 under the C load generator on CPU 1, 100 connections x 64 B: ping-pong, then 8 messages in
flight per connection. The machinery is run.py's (rounds in alternating order, the C server
before, after and between every four others, CPU from /proc); each goal is a median over rounds
of a ratio taken inside one round, and a goal within the rounds' noise of that median (1.4826 x
their median absolute deviation, the lab's rule: lab/verdicts.py) is inconclusive. With --write
the table replaces BENCHMARKS.md's "Goals" section; the raw rows go to benchmarks/goals.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from run import CLIENT_CPU, SERVER_CPU, find_reference, run_matrix  # noqa: E402
from servers import ROOT, catalogue  # noqa: E402

from iomodels.lab import verdicts  # noqa: E402

SECTION = "## Goals"
C = report.C
MODELS = ["epoll", "epoll-et", "uvloop", "io_uring", "io_uring:oneshot"]
BASELINES = ["uvloop Protocol", "selectors loop"]
PING_PONG, PIPELINED = (100, 64, 1), (100, 64, 8)
# (server, reference, cell, what is compared, at most (or, for "rps", at least), why)
GOALS = [
    ("io_uring", "epoll", PING_PONG, "cpu", 0.95, "completion I/O cheaper than readiness I/O"),
    ("io_uring", C, PING_PONG, "cpu", 1.10, "io_uring within 10 % of the C epoll server"),
    ("io_uring:oneshot", "epoll", PING_PONG, "cpu", 0.95, "as io_uring, one receive submitted per request"),
    ("io_uring:oneshot", C, PING_PONG, "cpu", 1.10, "as io_uring"),
    ("epoll", C, PING_PONG, "cpu", 1.12, "the epoll model within 12 % of C"),
    ("epoll-et", "epoll", PING_PONG, "cpu", 1.00, "edge-triggered no dearer than level-triggered"),
    ("uvloop", "uvloop Protocol", PING_PONG, "cpu", 1.01, "no overhead over a bare uvloop Protocol server"),
    ("best model", C, PIPELINED, "rps", 0.60, "pipelined, the server's CPU decides: messages/s"),
]
KEYS = {"cpu": "cpu_per_request_us", "rps": "rps"}


def best_model(rows: list[dict], cell: tuple) -> str | None:
    """The model with the highest median messages/s ratio to C in `cell`."""
    medians = {}
    for model in MODELS:
        found = report.ratios(rows, model, C, "rps").get(cell)
        if found:
            medians[model] = statistics.median(found)
    return max(medians, key=medians.get) if medians else None


def table(rows: list[dict]) -> list[str]:
    lines = ["| server | against | at | measured | goal | verdict | why |", "|---|---|---|---|---|---|---|"]
    for server, reference, cell, what, limit, why in GOALS:
        name = best_model(rows, cell) if server == "best model" else server
        found = report.ratios(rows, name, reference, KEYS[what]).get(cell) if name else None
        relation = "<=" if what == "cpu" else ">="
        goal = f"{'CPU/request' if what == 'cpu' else 'messages/s'} {relation} {limit:.2f}x"
        label = f"{name} (best)" if server == "best model" and name else server
        if not found:
            lines.append(f"| {label} | {reference} | {report.cell_name(cell)} | not measured | {goal} | - | {why} |")
            continue
        middle = statistics.median(found)
        noise = verdicts.samples(found).noise
        met = middle <= limit if what == "cpu" else middle >= limit
        miss = (middle / limit - 1) if what == "cpu" else (1 - middle / limit)
        if abs(middle - limit) < noise:  # the lab's rule: one more run could say either
            verdict = f"inconclusive (the goal is within the rounds' noise, {noise:.3f})"
        else:
            verdict = "met" if met else f"**not met** (by {100 * miss:.1f} %)"
        lines.append(f"| {label} | {reference} | {report.cell_name(cell)} | {middle:.3f} "
                     f"({min(found):.2f}-{max(found):.2f}) | {goal} | {verdict} | {why} |")
    return lines


def absolute(rows: list[dict], cell: tuple) -> list[str]:
    lines = [f"| server | CPU/request x {C} | messages/s x {C} | CPU/request (us) | messages/s |",
             "|---|---|---|---|---|"]
    for server in report.servers_in(rows):
        cpu = report.ratios(rows, server, C).get(cell)
        rps = report.ratios(rows, server, C, "rps").get(cell)
        if cpu:
            lines.append(f"| {server} | {statistics.median(cpu):.3f} | {statistics.median(rps):.3f} | "
                         f"{report.median_of(rows, server, cell, 'cpu_per_request_us'):.2f} | "
                         f"{report.median_of(rows, server, cell, 'rps'):,.0f} |")
    return lines


def render(results: dict) -> str:
    rows, run = results["rows"], results["run"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run["started"]))
    text = [SECTION, "",
            f"Issue 16's goals, measured {when} by `.venv/bin/python benchmarks/goals.py {run['command']}` "
            f"({run['seconds'] // 60} min) on {results['machine']['summary']}; load average at start "
            f"{run['load_average_at_start']}. A virtual machine on a shared host: absolute figures swing "
            f"between runs (up to 2x on a busy day), so only the ratios, each taken inside one round of "
            f"interleaved runs, are claims, and a goal within their noise is inconclusive. Server on "
            f"CPU {SERVER_CPU}, loadgen.c on CPU {CLIENT_CPU}; {run['rounds']} rounds, "
            f"{run['warmup']:g} s warm-up + {run['duration']:g} s measured per run; CPU per request is "
            f"the server's utime + stime from /proc over the window / messages answered in it.", "",
            *table(rows), ""]
    for cell in (PING_PONG, PIPELINED):
        text += [f"All servers at {report.cell_name(cell)} (medians over rounds):", "", *absolute(rows, cell), ""]
    return "\n".join(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--ref", type=Path, default=None,
                        help="folder with a built epoll_echo and loadgen (default: build benchmarks/c with make yardsticks)")
    parser.add_argument("--stock-malloc", action="store_true", help="leave glibc's malloc thresholds alone")
    parser.add_argument("--write", action="store_true", help="replace BENCHMARKS.md's Goals section")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "goals.json")
    parser.add_argument("--report-only", action="store_true", help="measure nothing: render --results")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(args.results.read_text())
    else:
        ref, how = find_reference(args.ref)
        if ref is None:
            print(f"the goals are set against the C server: {how}")
            return 2
        specs = [spec for spec in catalogue(ref, MODELS) if spec.kind != "baseline" or spec.name in BASELINES]
        cells = [dict(zip(("connections", "size", "depth"), cell)) for cell in (PING_PONG, PIPELINED)]
        started = time.time()
        rows = run_matrix(specs, cells, ref, args)
        run = {"command": " ".join(sys.argv[1:]), "started": started, "seconds": round(time.time() - started),
               "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
               "load_average_at_start": report.machine()["load_average_at_start"]}
        results = {"machine": report.machine(), "run": run, "rows": rows}
        args.results.write_text(json.dumps(results, indent=1))
    text = render(results)
    print("\n" + text)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        path.write_text(report.replace_section(path.read_text(), SECTION, text))
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
