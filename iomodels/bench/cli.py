"""`iomodels bench HOST:PORT [options]`: the command line over `iomodels.bench.run`."""

from __future__ import annotations

import argparse
import sys

from iomodels.addresses import parse_address
from iomodels.bench.errors import MAX_DURATION, MAX_WARMUP, BenchError, UsageError
from iomodels.bench.payload import Size

EXIT_FAILED = 1
EXIT_USAGE = 2


def _size(text: str) -> Size:
    try:
        return Size.parse(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
            value = float(text)
        except ValueError:
            value = -1.0
        if not (0 <= value if allow_zero else 0 < value) or value > limit:
            raise argparse.ArgumentTypeError(f"expected seconds {'from 0' if allow_zero else 'above 0'} "
                                             f"up to {limit:g}, not {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("address", type=parse_address, metavar="HOST:PORT",
                        help="the server to load: loopback only (127.0.0.0/8 or ::1)")
    parser.add_argument("--connections", "-c", type=int, default=10, metavar="C",
                        help="active connections (default: 10)")
    parser.add_argument("--size", "-s", type=_size, default=Size(64, 64), metavar="BYTES|LOW-HIGH",
                        help="message size, or a range drawn at random per message (default: 64)")
    parser.add_argument("--pipeline", "-d", type=int, default=1, metavar="D",
                        help="closed loop: messages in flight per connection (default: 1, ping-pong)")
    parser.add_argument("--duration", "-t", type=_seconds(MAX_DURATION, False), default=10.0, metavar="T",
                        help="measured seconds (default: 10)")
    parser.add_argument("--warmup", "-w", type=_seconds(MAX_WARMUP, True), default=1.0, metavar="W",
                        help="seconds of load before measuring, not counted (default: 1)")
    parser.add_argument("--rate", "-r", type=float, default=None, metavar="R",
                        help="open loop: R requests/s in total, sent on schedule whatever the replies do; "
                             "latency counts from the intended send time")
    parser.add_argument("--idle", type=int, default=0, metavar="K",
                        help="extra connections opened first and kept silent for the whole run (default: 0)")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                        help="worker processes sharing the connections (default: 1; auto: one per core minus one)")
    parser.add_argument("--connect-per-request", action="store_true",
                        help="open a new connection for every request and close it after the reply "
                             "(the no-connection-pool baseline)")
    parser.add_argument("--server-pid", type=int, default=None, metavar="PID",
                        help="also report CPU and memory of this process and its children")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=main)


def main(args) -> int:
    from iomodels.bench import report  # numpy, uvloop, rich: only when a bench actually runs
    from iomodels.bench.runner import run

    host, port = args.address
    try:
        result = run(host, port, connections=args.connections, size=args.size, pipeline=args.pipeline,
                     duration=args.duration, warmup=args.warmup, rate=args.rate, idle=args.idle,
                     workers=args.workers, connect_per_request=args.connect_per_request,
                     server_pid=args.server_pid, progress=True)
    except UsageError as exc:
        print(f"iomodels bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BenchError as exc:
        print(f"iomodels bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    report.show(result, args.json)
    return 0 if result.ok else EXIT_FAILED
