"""Every model against the references, side by side: server CPU per request, throughput, latency.

    .venv/bin/python benchmarks/run.py --quick       # 100 connections x 64 B, 3 s windows, ~5 min
    .venv/bin/python benchmarks/run.py               # 1/10/100/1000 connections x 64 B/1 KiB x depth 1/8/32

The yardstick is server CPU seconds per request: utime + stime of the server's whole process tree
(threads, forked children) from /proc, over the load generator's measured window, divided by the
requests completed in it. The server runs pinned to CPU 0 and the load generator to CPU 1; each
cell of the matrix (connections x message size x depth: messages in flight per connection, 1 is
ping-pong, 8 and 32 are pipelined, where the server's own CPU decides) runs every server in turn, the C
reference before, after and between every four others, and the turn is repeated `--rounds`
times in alternating order. The claims are medians over rounds of ratios measured in the same
turn (a model's CPU per request / the C server's, or / a Python baseline's), never absolute
times: the machine is shared. `--append` adds rounds to an earlier run's results (e.g. more of
one cell), `--report-only` rewrites BENCHMARKS.md from the results without measuring.

The load generator is the project's C yardstick, benchmarks/c/loadgen.c (built here with
`make yardsticks` into build/yardsticks/ if make and a C compiler are there): the same load for
every server. Without it, `iomodels bench` generates the load and
only the Python servers are compared (against the Python baselines); the report says so.
Results go to benchmarks/results.json, the plot to benchmarks/cpu_per_request.svg and the tables
to BENCHMARKS.md (its other sections are kept as they are).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from iomodels.procstats import TreeSampler  # noqa: E402
from servers import MALLOC_ENV, ROOT, ServerFailed, Spec, catalogue, start, stop  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
C_EVERY = 4
YARDSTICK_SOURCE = ROOT / "benchmarks" / "c"
YARDSTICK_BUILD = ROOT / "build" / "yardsticks"
MODELS = ["blocking", "threaded", "forking", "threadpool", "nonblocking", "select", "poll", "epoll", "epoll-et",
          "sigio", "asyncio", "uvloop", "io_uring", "io_uring:oneshot"]


def find_reference(folder: Path | None) -> tuple[Path | None, str]:
    """The folder holding epoll_echo and loadgen, building them if needed; else None and why."""
    if folder is not None:
        missing = [n for n in ("epoll_echo", "loadgen") if not (folder / n).exists()]
        return (None, f"{', '.join(missing)} not in {folder}") if missing else (folder, f"{folder}")
    if not shutil.which("make") or not shutil.which(os.environ.get("CC", "cc")):
        return None, "no C compiler (make and cc are needed to build the C yardsticks)"
    built = subprocess.run(["make", "-s", "-C", str(ROOT), "yardsticks"], capture_output=True, text=True)
    if built.returncode:
        return None, f"building the C yardsticks failed: {built.stderr.strip()[-300:]}"
    return YARDSTICK_BUILD, f"benchmarks/c, built with `make yardsticks` into {YARDSTICK_BUILD.relative_to(ROOT)}"


def run_load(ref: Path | None, port: int, server_pid: int, cell: dict, duration: float,
             warmup: float) -> tuple[dict, float]:
    """Drive the server once; return the load generator's result and when its window ended."""
    c, s, d = str(cell["connections"]), str(cell["size"]), str(cell["depth"])
    if ref is not None:
        argv = [str(ref / "loadgen"), "-p", str(port), "-c", c, "-s", s, "-d", d,
                "-t", str(duration), "-w", str(warmup), "-P", str(server_pid)]
    else:
        argv = [sys.executable, "-m", "iomodels", "bench", f"127.0.0.1:{port}", "-c", c, "-s", s,
                "--pipeline", d, "--duration", str(duration), "-w", str(warmup), "--workers", "1", "--json",
                "--server-pid", str(server_pid)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}))
    try:
        # The C generator prints its line as soon as its window closes (then closes its sockets).
        line = proc.stdout.readline()
        ended = time.monotonic()
        proc.wait(timeout=60 + duration + warmup)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    if not line.strip():
        raise ServerFailed(f"load generator failed ({proc.returncode}): {stderr.strip()[-300:]}")
    return json.loads(line), ended


def warmup_for(connections: int, warmup: float) -> float:
    """A thousand clients take a forking server seconds to fork for: measure after that."""
    return max(warmup, connections / 250)


def measure(spec: Spec, cell: dict, ref: Path | None, duration: float, warmup: float, env: dict) -> dict:
    warmup = warmup_for(cell["connections"], warmup)
    server = start(spec, cell["connections"], {SERVER_CPU}, env)
    try:
        with TreeSampler(server.pid) as sampler:
            load, ended = run_load(ref, server.port, server.pid, cell, duration, warmup)
            time.sleep(0.15)  # one more sample after the window, to interpolate its end
    finally:
        errors = stop(server)
    row = {"server": spec.name, "kind": spec.kind, **cell, "at": time.time()}
    if ref is not None:
        cpu_s = sampler.cpu_between(ended - duration, ended)
        row.update(requests=load["requests"], rps=load["rps"], p50_us=load["p50_us"], p99_us=load["p99_us"],
                   errors=load["errors"] + load["mismatches"], server_cpu_s=cpu_s,
                   loadgen_server_cpu_s=(load.get("server_cpu_pct") or 0) / 100 * duration,
                   client_cpu=load["client_cpu_pct"] / 100, other_cpu=load["other_cpu_pct"] / 100)
    else:
        cpu_s = (load["server_cpu_per_request_us"] or 0) * load["requests"] / 1e6
        row.update(requests=load["requests"], rps=load["requests_per_s"], p50_us=load["latency_us"]["p50"],
                   p99_us=load["latency_us"]["p99"], errors=load["errors"] + load["mismatches"],
                   server_cpu_s=cpu_s, client_cpu=load["client_cpu"], other_cpu=None)
    row["cpu_per_request_us"] = cpu_s / row["requests"] * 1e6 if row["requests"] else None
    if spec.kind == "model" and "Traceback" in errors:  # (socketserver prints one per reset peer)
        row["server_errors"] = errors[-2000:]
    return row


def turn_order(specs: list[Spec], number: int) -> list[Spec]:
    """The other servers forwards in even rounds, backwards in odd ones, with the C reference
    before, after, and between every C_EVERY of them: each is compared with the C runs that
    bracket it, minutes apart at most, however busy the machine gets meanwhile."""
    c = [s for s in specs if s.kind == "c"]
    rest = [s for s in specs if s.kind != "c"]
    if number % 2:
        rest.reverse()
    if not c:
        return rest
    order = list(c)
    for start in range(0, len(rest), C_EVERY):
        order += rest[start:start + C_EVERY] + c
    return order


def run_matrix(specs: list[Spec], cells: list[dict], ref: Path | None, args) -> list[dict]:
    rows = []
    def runs_in(cell: dict) -> list[Spec]:
        return [s for s in turn_order(specs, 0) if not (s.single_client and cell["connections"] > 1)]
    total = args.rounds * sum(len(runs_in(cell)) for cell in cells)
    done = 0
    for number in range(args.rounds):
        for cell in cells:
            for seq, spec in enumerate(turn_order(specs, number)):
                if spec.single_client and cell["connections"] > 1:
                    continue
                done += 1
                label = f"[{done}/{total}] round {number + 1}, {report.cell_name(cell)}, {spec.name}"
                try:
                    row = measure(spec, cell, ref, args.duration, args.warmup, {} if args.stock_malloc else MALLOC_ENV)
                except (ServerFailed, subprocess.TimeoutExpired, OSError) as exc:
                    print(f"{label}: FAILED: {exc}", flush=True)
                    rows.append({"server": spec.name, **cell, "round": number, "seq": seq, "failed": str(exc)})
                    continue
                row.update(round=number, seq=seq)
                rows.append(row)
                per_request = row["cpu_per_request_us"]
                print(f"{label}: {row['rps']:,.0f} req/s, "
                      f"{'-' if per_request is None else f'{per_request:.2f}'} us CPU/req, "
                      f"p99 {row['p99_us']:.0f} us, errors {row['errors']}"
                      + (", SERVER TRACEBACK" if "server_errors" in row else ""), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 connections x 64 B only, 3 s windows")
    parser.add_argument("--connections", default="1,10,100,1000", help="comma-separated (default: 1,10,100,1000)")
    parser.add_argument("--sizes", default="64,1024", help="message sizes in bytes (default: 64,1024)")
    parser.add_argument("--depths", default=None,
                        help="messages in flight per connection, comma-separated (default: 1,8,32; quick: 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run (default: 5, quick 3)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--models", default=",".join(MODELS),
                        help="models to measure; io_uring:oneshot is io_uring with --uring-mode oneshot")
    parser.add_argument("--baselines", default="all",
                        help="Python baselines to run beside the models: all, none, or names from: asyncio, uvloop, "
                             "socketserver, selectors")
    parser.add_argument("--ref", type=Path, default=None,
                        help="folder with a built epoll_echo and loadgen (default: `make yardsticks`, build/yardsticks)")
    parser.add_argument("--stock-malloc", action="store_true",
                        help="leave glibc's malloc thresholds alone (default: fixed, see servers.MALLOC_ENV)")
    parser.add_argument("--before", type=Path, default=None, metavar="CHECKOUT",
                        help="a checkout of an earlier commit (git worktree add /tmp/before HEAD~1): "
                             "each model also runs from there, as MODEL@before, in the same rounds")
    parser.add_argument("--no-write", action="store_true", help="print the tables; leave BENCHMARKS.md as it is")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: write BENCHMARKS.md and the plot again from --results")
    parser.add_argument("--append", action="store_true",
                        help="add this run's rounds to those already in --results (e.g. more rounds of one cell)")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(args.results.read_text())
        print(f"written: {report.write(results, report.render(results))}")
        return 0
    if args.quick:
        args.connections, args.sizes = "100", "64"
    args.depths = args.depths or ("1" if args.quick else "1,8,32")
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        print(f"needs CPUs {SERVER_CPU} and {CLIENT_CPU}, to pin the server and the load generator apart")
        return 2
    ref, how = find_reference(args.ref)
    if ref is None:
        print(f"no C reference ({how}): load from `iomodels bench`, Python servers only, "
              f"ratios against the Python baselines", flush=True)
    else:
        print(f"C reference: {how}", flush=True)
    cells = [{"connections": int(c), "size": int(s), "depth": int(d)} for d in args.depths.split(",")
             for s in args.sizes.split(",") for c in args.connections.split(",")]
    if args.before is not None and not (args.before / "iomodels" / "__init__.py").is_file():
        parser.error(f"--before {args.before}: not a checkout of iomodels (no iomodels/__init__.py)")
    specs = [spec for spec in catalogue(ref, [m for m in args.models.split(",") if m], args.before)
             if spec.kind != "baseline" or args.baselines == "all"
             or spec.name.split()[0] in args.baselines.split(",")]
    started = time.time()
    rows = run_matrix(specs, cells, ref, args)
    run = {"command": " ".join(sys.argv[1:]), "started": started, "seconds": round(time.time() - started),
           "duration": args.duration, "warmup": args.warmup, "rounds": args.rounds,
           "cells": [report.cell_name(cell) for cell in cells],
           "load_average_at_start": report.machine()["load_average_at_start"]}
    results = {"machine": report.machine(), "reference": how if ref else None,
               "load_generator": "loadgen.c" if ref else "iomodels bench", "server_cpu": SERVER_CPU,
               "client_cpu": CLIENT_CPU, "malloc_env": {} if args.stock_malloc else MALLOC_ENV,
               "runs": [run], "rows": rows}
    if args.append and args.results.exists():
        earlier = json.loads(args.results.read_text())
        offset = 1 + max((row["round"] for row in earlier["rows"]), default=-1)
        for row in rows:
            row["round"] += offset
        results = {**earlier, "runs": earlier["runs"] + [run], "rows": earlier["rows"] + rows}
    args.results.write_text(json.dumps(results, indent=1))
    text = report.render(results, None if args.no_write else report.PLOT)
    print("\n" + text)
    if not args.no_write:
        print(f"written: {report.write(results, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
