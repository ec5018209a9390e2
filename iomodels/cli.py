"""`iomodels serve | client | models | explain | bench | lab | trace | locustfile`: the command line.

Errors the user can cause (a bad flag, an unknown model, a busy port, a refused connection) are one
line on stderr and a non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from iomodels.addresses import DEFAULT_HOST, DEFAULT_PORT, parse_address
from iomodels.serving.config import LOG_LEVELS, MAX_SECONDS, URING_MODES, ConfigError, ServerConfig
from iomodels.units import parse_bytes

EXIT_USAGE = 2
EXIT_STDOUT_CLOSED = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the whole usage
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_size(text: str) -> int:
    """'65536', '64K', '1M', '2G' -> bytes."""
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    if value != math.inf and value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_SECONDS} seconds (or inf: never), not {text!r}")
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
    # The options only some models read default to None here: given, they are checked against the
    # model (a warning if it does not read them); not given, ServerConfig's default applies.
    defaults = ServerConfig()
    p.add_argument("--threads", type=int, default=None,
                   help=f"threadpool: number of pool threads (default: {defaults.threads})")
    p.add_argument("--workers", type=int, default=1,
                   help="event-driven models: processes sharing the port with SO_REUSEPORT (default: 1)")
    p.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="accept and close at once any connection beyond N open ones (default: no limit)")
    p.add_argument("--idle-timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="close a connection that sends nothing for this long (default, or inf: never)")
    p.add_argument("--max-connection-age", type=_positive_float, default=None, metavar="SECONDS",
                   help="close a connection older than this, however active (default, or inf: never)")
    p.add_argument("--drain-timeout", type=float, default=3.0, metavar="SECONDS",
                   help="after SIGTERM, how long open connections may finish (default: 3; inf: until they close)")
    p.add_argument("--high-water", type=parse_size, default=None, metavar="BYTES",
                   help="stop reading from a peer with more unsent output than this (default: 256K)")
    p.add_argument("--low-water", type=parse_size, default=None, metavar="BYTES",
                   help="resume reading once its unsent output is down to this (default: 64K)")
    p.add_argument("--poll-interval", type=_positive_float, default=None, metavar="SECONDS",
                   help=f"select: the timeout of each select() call (default: {defaults.poll_interval}, "
                        "as in the tutorial)")
    p.add_argument("--uring-mode", choices=URING_MODES, default=None,
                   help="io_uring: one recv per completion, or multishot recv with a buffer ring "
                        f"(default: {defaults.uring_mode})")
    p.add_argument("--recv-size", type=parse_size, default=None, metavar="BYTES",
                   help="bytes asked of each recv; not uvloop, which reads into libuv's buffer (default: 64K)")
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
    from iomodels.serving import models
    defaults = ServerConfig()
    # Give one mark and the other follows it, so '--high-water 4K' alone is valid.
    high = args.high_water if args.high_water is not None else max(defaults.high_water, args.low_water or 0)
    low = args.low_water if args.low_water is not None else min(defaults.low_water, high // 4)
    given = {option: getattr(args, option) for option in models.tunable() if getattr(args, option) is not None}
    config = ServerConfig(
        model=args.model, host=args.host, port=args.port, backlog=args.backlog,
        workers=args.workers, max_connections=args.max_connections, idle_timeout=args.idle_timeout,
        max_connection_age=args.max_connection_age, drain_timeout=args.drain_timeout,
        high_water=high, low_water=low, log_level=args.log_level, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, stats_file=args.stats_file, **given)
    for option in models.ignored_options(config.model, given):
        flag = "--" + option.replace("_", "-")
        print(f"iomodels serve: warning: {flag} does not apply to model {config.model} "
              f"(read by {models.readers(option)}); ignored", file=sys.stderr)
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
        description="Interactive client, like the tutorial's ('>>: ' prompt with line editing and history; "
                    "empty lines are skipped). When stdin is not a terminal, sends each line and prints each "
                    "reply, one per line; --raw passes bytes through untouched. Every reply is checked: one that "
                    "is not the request uppercased, or late, ends the client with status 1.")
    p.add_argument("address", type=parse_address, metavar="HOST:PORT")
    p.add_argument("--message", "-M", default=None, help="send this one message, print the reply, exit")
    p.add_argument("--raw", action="store_true",
                   help="pass stdin's bytes to the server untouched (no lines, no decoding) and the replies' "
                        "bytes to stdout")
    p.add_argument("--history", metavar="FILE", default=None,
                   help="at a terminal: keep the line history in FILE across sessions (default: this session only)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="give up when a whole reply has not arrived this long after its request (default: 10)")
    p.set_defaults(func=_client)


def _client(args) -> int:
    from iomodels.client import echo
    return echo.main(args.address, message=args.message, timeout=args.timeout, raw=args.raw,
                     history=args.history)


def _add_bench(sub) -> None:
    from iomodels.bench import cli as bench_cli
    p = sub.add_parser(
        "bench", help="load an uppercase-echo server and measure it, checking every reply",
        description="Load generator: closed loop (--connections, --pipeline) or open loop (--rate), idle "
                    "connections, worker processes; verifies every reply byte for byte; reports requests/s, "
                    "latency percentiles, errors and CPU. Loopback targets only, unless --allow-remote.")
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


def _add_trace(sub) -> None:
    from iomodels.trace import timeline
    p = sub.add_parser(
        "trace", help="trace a model's system calls through one request: who waits where, who copies",
        description="Start MODEL's server under strace; a client connects, stays silent --delay seconds, "
                    "sends one request, reads the reply and closes. Prints each system call of that "
                    "connection's life with its duration, result and phase (wait for the data, copy it, "
                    "other), and one sentence of who waited where. --json: one object a line.")
    timeline.add_arguments(p)


def _add_locustfile(sub) -> None:
    p = sub.add_parser(
        "locustfile", help="print the path of the bundled Locust user class (for load from several machines)",
        description='Print the path of the Locust user class for the uppercase-echo protocol: '
                    'locust -f "$(iomodels locustfile)" --host 127.0.0.1:PORT (needs iomodels[locust]).')
    p.set_defaults(func=_locustfile)


def _locustfile(args) -> int:
    from importlib.resources import files
    print(files("iomodels.bench") / "locustfile.py")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from iomodels.bench.export import version
    parser = _Parser(prog="iomodels", description="One uppercase-echo service over every Unix I/O "
                     "model, and the tools to measure what each one costs.")
    parser.add_argument("--version", action="version", version=f"iomodels {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in (_add_serve, _add_client, _add_models, _add_explain, _add_bench, _add_lab, _add_trace,
                _add_locustfile):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: what a JSON result records
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"iomodels {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `iomodels explain epoll | head`: the reader left; say nothing more (and not at exit either),
        # and exit as a program killed by SIGPIPE would be reported: 128 + 13.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_STDOUT_CLOSED
