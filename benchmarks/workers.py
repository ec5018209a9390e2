"""`iomodels serve --workers N` against `--workers 1`, same load: does throughput scale with processes?

    .venv/bin/python benchmarks/workers.py [--models epoll,uvloop] [--workers 1,2] [--rounds 3]

The server's processes may run on `--server-cpus` (default: all of them), the C load generator
(`--threads` threads) on `--client-cpus`. On a machine with enough cores give them disjoint sets,
e.g. `--server-cpus 0-3 --client-cpus 4-7 --workers 1,2,4 --threads 4`. On the 2-core machine of
BENCHMARKS.md the generator needs a core of its own, so a second worker can only share the
server's one core or take the generator's: the point of the run there is to show exactly that.
Prints a Markdown table of req/s and server CPU per request, as ratios to `--workers 1`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iomodels.procstats import TreeSampler  # noqa: E402
from run import find_reference  # noqa: E402
from servers import MALLOC_ENV, catalogue, start, stop  # noqa: E402


def cpus(text: str) -> set[int]:
    found = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def measure(spec, args, ref: Path) -> dict:
    server = start(spec, args.connections, args.server_cpus, MALLOC_ENV)
    try:
        with TreeSampler(server.pid) as sampler:
            argv = [str(ref / "loadgen"), "-p", str(server.port), "-c", str(args.connections), "-s", str(args.size),
                    "-t", str(args.duration), "-w", "2", "-j", str(args.threads)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 60,
                                  preexec_fn=lambda: os.sched_setaffinity(0, args.client_cpus))
            ended = time.monotonic()
            time.sleep(0.15)
    finally:
        stop(server)
    load = json.loads(done.stdout)
    cpu = sampler.cpu_between(ended - args.duration, ended)
    return {"rps": load["rps"], "cpu_per_request_us": cpu / load["requests"] * 1e6, "errors": load["errors"],
            "client_cpu": load["client_cpu_pct"] / 100}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="epoll,uvloop")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1, help="load generator threads (default: 1)")
    parser.add_argument("--server-cpus", type=cpus, default=None, help="e.g. 0-3 (default: every CPU)")
    parser.add_argument("--client-cpus", type=cpus, default=None, help="e.g. 4-7 (default: the last CPU)")
    args = parser.parse_args()
    every = os.sched_getaffinity(0)
    args.server_cpus = args.server_cpus or every
    args.client_cpus = args.client_cpus or {max(every)}
    ref, how = find_reference(None)
    if ref is None:
        print(f"needs the C load generator: {how}")
        return 2
    specs = []
    for model in args.models.split(","):
        base = catalogue(None, [model])[-1]
        for count in map(int, args.workers.split(",")):
            specs.append(dataclasses.replace(base, name=f"{model} --workers {count}",
                                             argv=base.argv + ("--workers", str(count))))
    rows: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    for number in range(args.rounds):
        for spec in specs if number % 2 == 0 else specs[::-1]:
            row = measure(spec, args, ref)
            rows[spec.name].append(row)
            print(f"round {number + 1}, {spec.name}: {row['rps']:,.0f} req/s, "
                  f"{row['cpu_per_request_us']:.2f} us CPU/req, load generator CPU {row['client_cpu']:.2f}", flush=True)
    print(f"\n{args.connections} connections x {args.size} B, server on CPUs {sorted(args.server_cpus)}, "
          f"load generator ({args.threads} thread(s)) on CPUs {sorted(args.client_cpus)}, {args.rounds} rounds of "
          f"{args.duration:g} s; medians, ratios to --workers {args.workers.split(',')[0]} of the same model:\n")
    print("| server | req/s | req/s ratio | CPU/request (us) | CPU/request ratio | load generator CPU |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        names = [name for name in rows if name.startswith(f"{model} --")]
        base_rps = statistics.median(r["rps"] for r in rows[names[0]])
        base_cpu = statistics.median(r["cpu_per_request_us"] for r in rows[names[0]])
        for name in names:
            rps = statistics.median(r["rps"] for r in rows[name])
            cpu = statistics.median(r["cpu_per_request_us"] for r in rows[name])
            client = statistics.median(r["client_cpu"] for r in rows[name])
            print(f"| {name} | {rps:,.0f} | {rps / base_rps:.2f} | {cpu:.2f} | {cpu / base_cpu:.2f} | {client:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
