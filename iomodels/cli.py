"""`iomodels serve | client | models | explain | bench | lab`: the command line.

Errors the user can cause (a bad flag, an unknown model, a busy port, a refused connection) are one
line on stderr and a non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from iomodels.addresses import DEFAULT_HOST, DEFAULT_PORT, parse_address
from iomodels.serving.config import LOG_LEVELS, URING_MODES, ConfigError, ServerConfig

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the whole usage
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_size(text: str) -> int:
    """'65536', '64K', '1M', '2G' -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (examples: 4096, 64K, 1M)") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the uppercase-echo server with one I/O model",
        description="Serve the uppercase-echo protocol with one I/O model until SIGINT/SIGTERM. "
                    "When ready, prints 'listening on HOST:PORT (model NAME)'. "
                    "See 'iomodels models' for the models and 'iomodels explain NAME' for one in depth.",
        epilog="Signals: SIGINT/SIGTERM stop accepting and drain open connections for --drain-timeout "
               "(a second one stops at once, exit status 128+signal); SIGUSR1 rewrites --stats-file "
               "(without one it is logged and ignored); SIGHUP is logged and ignored.")
    p.add_argument("--model", "-m", default="epoll", help="I/O model (default: epoll; see 'iomodels models')")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})")
    p.add_argument("--port", "-p", type=int, default=DEFAULT_PORT,
                   help=f"port to bind (default: {DEFAULT_PORT}; 0 picks a free port and prints it)")
    p.add_argument("--backlog", type=int, default=1024, help="listen() backlog (default: 1024)")
    p.add_argument("--threads", type=int, default=4, help="threadpool: number of pool threads (default: 4)")
    p.add_argument("--workers", type=int, default=1,
                   help="event-driven models: processes sharing the port with SO_REUSEPORT (default: 1)")
    p.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="accept and close at once any connection beyond N open ones (default: no limit)")
    p.add_argument("--idle-timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="close a connection that sends nothing for this long (default: never)")
    p.add_argument("--max-connection-age", type=_positive_float, default=None, metavar="SECONDS",
                   help="close a connection older than this, however active (default: never)")
    p.add_argument("--drain-timeout", type=float, default=3.0, metavar="SECONDS",
                   help="after SIGTERM, how long open connections may finish (default: 3)")
    p.add_argument("--high-water", type=parse_size, default=None, metavar="BYTES",
                   help="stop reading from a peer with more unsent output than this (default: 256K)")
    p.add_argument("--low-water", type=parse_size, default=None, metavar="BYTES",
                   help="resume reading once its unsent output is down to this (default: 64K)")
    p.add_argument("--poll-interval", type=_positive_float, default=0.5, metavar="SECONDS",
                   help="select: the timeout of each select() call (default: 0.5, as in the tutorial)")
    p.add_argument("--uring-mode", choices=URING_MODES, default=None,
                   help="io_uring: one recv per completion, or multishot recv with a buffer ring "
                        "(default: multishot)")
    p.add_argument("--recv-size", type=parse_size, default=65536, metavar="BYTES",
                   help="bytes asked of each recv (default: 64K)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="expose the counters in Prometheus' text format on this port (0: pick one, logged)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                   help="address of the metrics endpoint (default: 127.0.0.1, whatever --host is)")
    p.add_argument("--stats-file", default=None, metavar="PATH",
                   help="write the counters as JSON to PATH at exit and on SIGUSR1")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default: info")
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    from iomodels import startup
    defaults = ServerConfig()
    # Give one mark and the other follows it, so '--high-water 4K' alone is valid.
    high = args.high_water if args.high_water is not None else max(defaults.high_water, args.low_water or 0)
    low = args.low_water if args.low_water is not None else min(defaults.low_water, high // 4)
    config = ServerConfig(
        model=args.model, host=args.host, port=args.port, backlog=args.backlog, threads=args.threads,
        workers=args.workers, max_connections=args.max_connections, idle_timeout=args.idle_timeout,
        max_connection_age=args.max_connection_age, drain_timeout=args.drain_timeout,
        high_water=high, low_water=low,
        poll_interval=args.poll_interval, uring_mode=args.uring_mode or defaults.uring_mode,
        recv_size=args.recv_size, log_level=args.log_level, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        stats_file=args.stats_file)
    return startup.run(config)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the I/O models", description="List the I/O models: "
                       "name, family, tutorial section, what each waits in, and its cost.")
    p.set_defaults(func=_models)


def _models(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from iomodels.serving import models
    table = Table(title="I/O models (iomodels explain NAME for the essay)")
    for column in ("name", "family", "§", "waits in", "cost"):
        table.add_column(column)
    for name in models.names():
        info = models.info(name)
        reason = models.unavailable_reason(name)
        cost = info.cost + (f" [red](unavailable here: {reason})[/red]" if reason else "")
        table.add_row(name, info.family, info.section, info.waits_in, cost)
    Console().print(table)
    return 0


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="print a model's essay: who waits where, costs, failures",
                       description="Print the essay of one I/O model.")
    p.add_argument("model", help="a model name (see 'iomodels models')")
    p.set_defaults(func=_explain)


def _explain(args) -> int:
    from iomodels.serving import models
    info = models.info(args.model)
    print(f"{info.name} — {info.family} (tutorial section {info.section})\n")
    print(models.essay(args.model))
    return 0


def _add_client(sub) -> None:
    p = sub.add_parser(
        "client", help="talk to an uppercase-echo server",
        description="Interactive client, like the tutorial's ('>>: ' prompt; empty lines are skipped). "
                    "When stdin is not a terminal, sends each line and prints each reply, one per line.")
    p.add_argument("address", type=parse_address, metavar="HOST:PORT")
    p.add_argument("--message", "-M", default=None, help="send this one message, print the reply, exit")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="give up on a reply after this long (default: 10)")
    p.set_defaults(func=_client)


def _client(args) -> int:
    from iomodels.client import echo
    return echo.main(args.address, message=args.message, timeout=args.timeout)


def _add_bench(sub) -> None:
    from iomodels.bench import cli as bench_cli
    p = sub.add_parser(
        "bench", help="load an uppercase-echo server and measure it, checking every reply",
        description="Load generator: closed loop (--connections, --pipeline) or open loop (--rate), idle "
                    "connections, worker processes; verifies every reply byte for byte; reports requests/s, "
                    "latency percentiles, errors and CPU. Loopback targets only.")
    bench_cli.add_arguments(p)


def _add_lab(sub) -> None:
    from iomodels.lab import cli as lab_cli
    p = sub.add_parser(
        "lab", help="run the experiments behind every claim of the tutorial and write a report",
        description="Run the lab's experiments (each tests one claim of the tutorial on this machine) and "
                    "write index.html (plots, verdicts), report.md and results.json. --quick takes a few "
                    "minutes; Ctrl-C writes what was measured so far.")
    lab_cli.add_arguments(p)
    p.set_defaults(func=lab_cli.main)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iomodels", description="One uppercase-echo service over every Unix I/O "
                     "model, and the tools to measure what each one costs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in (_add_serve, _add_client, _add_models, _add_explain, _add_bench, _add_lab):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"iomodels {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `iomodels explain epoll | head`: the reader left; say nothing more (and not at exit either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
