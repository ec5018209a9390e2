"""`iomodels bench HOST:PORT [options]`: the command line over `iomodels.bench.run`.

Short flags are chosen so that a wrk habit cannot silently change the test: in wrk `-d` is the
duration and `-t` the number of threads, so here both are refused with a hint (they once meant
pipeline depth and duration), and the rate is `-R` as in wrk2 (`-r` too).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iomodels.addresses import parse_address
from iomodels.bench.errors import MAX_DURATION, MAX_WARMUP, BenchError, UsageError
from iomodels.bench.payload import Size
from iomodels.units import parse_bytes, parse_count, parse_seconds

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
WRK_FLAGS = {
    "-d": "in wrk -d is the duration: say --duration 30s (or --pipeline N for messages in flight)",
    "-t": "in wrk -t is the number of threads: say --workers N (or --duration 30s for how long)",
}
LATENCY_HELP = ("What a latency is: from when a request was written (the write(2) that carried it; with "
                "--rate, when it should have been) to when the receive that completed its reply returned. At "
                "--pipeline N the requests of one refill share their write instant, and the replies completed "
                "by one receive share its instant.")


def _size(text: str) -> Size:
    low, sep, high = text.strip().partition("-")
    if not low or (sep and not high):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 64, 4K, 64-4K)")
    try:
        return Size.parse((parse_bytes(low), parse_bytes(high) if sep else parse_bytes(low)))
    except (UsageError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--size ")) from None


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers must be a number or 'auto', not {text!r}") from None


def _seconds(limit: float, allow_zero: bool):
    def parse(text: str) -> float:
        try:
            value = parse_seconds(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not (0 <= value if allow_zero else 0 < value) or value > limit:
            raise argparse.ArgumentTypeError(f"expected a duration {'from 0' if allow_zero else 'above 0'} "
                                             f"up to {limit:g} s, not {text!r}")
        return value
    return parse


def _count(text: str) -> int:
    """10, 10k, 1M: a whole number of connections."""
    try:
        value = parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}")
    return int(value)


def _rate(text: str) -> float:
    try:
        value = parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate above 0, not {text!r}")
    return value


class _WrkFlag(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not an option here: {WRK_FLAGS[option_string]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = LATENCY_HELP
    parser.add_argument("address", type=parse_address, metavar="HOST:PORT",
                        help="the server to load: loopback only (127.0.0.0/8 or ::1) unless --allow-remote")
    parser.add_argument("--connections", "-c", type=_count, default=10, metavar="C",
                        help="active connections: 100, 1k (default: 10)")
    parser.add_argument("--size", "-s", type=_size, default=Size(64, 64), metavar="BYTES|LOW-HIGH",
                        help="message size (4096, 4K, 1M), or a range drawn at random per message (64-4K) "
                             "(default: 64)")
    parser.add_argument("--pipeline", "-p", type=_count, default=1, metavar="N",
                        help="closed loop: messages in flight per connection (default: 1, ping-pong)")
    parser.add_argument("--duration", type=_seconds(MAX_DURATION, False), default=10.0, metavar="T",
                        help="measured time: 10, 10s, 500ms, 1m (default: 10s)")
    parser.add_argument("--warmup", "-w", type=_seconds(MAX_WARMUP, True), default=1.0, metavar="W",
                        help="load before measuring, not counted (default: 1s)")
    parser.add_argument("--rate", "-R", "-r", type=_rate, default=None, metavar="R",
                        help="open loop: R requests/s in total (20000, 20k), sent on schedule whatever the "
                             "replies do; latency counts from the intended send time")
    parser.add_argument("--connect-rate", type=_rate, default=None, metavar="R",
                        help="connection churn: R new connections/s in total, each sending one message, "
                             "reading its reply and closing (--connect-per-request at --rate R; the latency "
                             "includes the handshake)")
    parser.add_argument("--idle", type=_count, default=0, metavar="K",
                        help="extra connections opened first and kept silent for the whole run (default: 0)")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                        help="worker processes sharing the connections (default: 1; auto: one per core minus one)")
    parser.add_argument("--connect-per-request", action="store_true",
                        help="open a new connection for every request and close it after the reply "
                             "(the no-connection-pool baseline)")
    parser.add_argument("--server-pid", type=int, default=None, metavar="PID",
                        help="also report CPU and memory of this process and its children")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table (with the full percentile spectrum, "
                             "the per-second series, the tool's version, the machine and the options)")
    parser.add_argument("--hdr-log", metavar="FILE",
                        help="write an HdrHistogram interval log (one histogram per second, ns), readable by "
                             "HdrHistogram's HistogramLogReader and plotters")
    parser.add_argument("--csv", metavar="FILE",
                        help="write the per-second series: requests/s, errors, mismatches, p50 and p99")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a target that is not this machine (warned): for loading a server of yours "
                             "on another host")
    for flag in WRK_FLAGS:
        parser.add_argument(flag, action=_WrkFlag, nargs="?", help=argparse.SUPPRESS)
    parser.set_defaults(func=main)


def _check_outputs(args) -> str | None:
    """Whether the files asked for can be written, without creating them yet: a run refused or
    interrupted before it measured anything leaves no empty file behind."""
    for path in (args.hdr_log, args.csv):
        if path is None:
            continue
        target = Path(path)
        if target.is_dir():
            return f"cannot write {path}: it is a directory"
        folder = target.parent
        if not (os.access(target, os.W_OK) if target.exists() else folder.is_dir() and os.access(folder, os.W_OK)):
            return f"cannot write {path}: {'permission denied' if folder.is_dir() else 'no such folder'}"
    if args.connect_rate is not None and (args.rate is not None or args.pipeline > 1):
        return "--connect-rate is a rate of one-request connections: no --rate or --pipeline with it"
    return None


def main(args) -> int:
    from iomodels.bench import export, report  # numpy, uvloop, rich: only when a bench actually runs
    from iomodels.bench.runner import check_target, run

    host, port = args.address
    problem = _check_outputs(args)
    if problem:
        print(f"iomodels bench: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    churn = args.connect_rate is not None
    try:
        _, remote = check_target(host, port, args.allow_remote)
        if remote:
            print(f"iomodels bench: warning: {remote}", file=sys.stderr)
        result = run(host, port, connections=args.connections, size=args.size, pipeline=args.pipeline,
                     duration=args.duration, warmup=args.warmup, rate=args.connect_rate if churn else args.rate,
                     idle=args.idle, workers=args.workers, connect_per_request=args.connect_per_request or churn,
                     server_pid=args.server_pid, progress=True, allow_remote=args.allow_remote,
                     keep_partial=True)
    except UsageError as exc:
        print(f"iomodels bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BenchError as exc:
        print(f"iomodels bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("iomodels bench: interrupted before the load started", file=sys.stderr)
        return EXIT_INTERRUPTED
    result.about["command"] = ["iomodels", *args.argv]
    if remote in result.warnings:  # said once, before the first packet; the JSON's about has allow_remote
        result.warnings.remove(remote)
    if result.interval_histograms:
        if args.hdr_log:
            export.write_hdr_log(args.hdr_log, result.interval_histograms, result.about["measure_start_epoch"])
        if args.csv:
            export.write_csv(args.csv, result.intervals)
    elif args.hdr_log or args.csv:
        result.warnings.append("nothing was measured: no --hdr-log or --csv written")
    report.show(result, args.json)
    if result.partial:
        return EXIT_INTERRUPTED
    return 0 if result.ok else EXIT_FAILED
