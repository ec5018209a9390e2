"""`iomodels trace MODEL`: the scenario's system calls as a timeline in the terminal, or as JSON lines.

A run of identical calls (the spinner's thousand recvs that return EAGAIN) is one line in the
terminal ("× 1,097"); `--json` prints every call, one object a line.
"""

from __future__ import annotations

import json
import sys

from iomodels.lab.measuring import fmt
from iomodels.serving.config import URING_MODES
from iomodels.trace.phases import Trace, duration, runs

MARK = {"wait": "WAIT", "copy": "COPY", "other": ""}
FIELDS = ("lane", "call", "start_us", "duration_us", "result", "phase")


def lane_names(trace: Trace) -> dict[int, str]:
    names, counts = {}, {}
    for lane, kind in trace.lanes.items():
        counts[kind] = counts.get(kind, 0) + 1
        names[lane] = "main" if kind == "main" else f"{kind} {counts[kind]}"
    return names


def render(trace: Trace, out=sys.stdout) -> None:
    s = trace.summary
    names = lane_names(trace)
    slept_ms = trace.client.silent_s * 1000
    overslept = f" (it slept {fmt(slept_ms)} ms: a busy machine)" if slept_ms > s["delay_ms"] * 1.1 else ""
    print(f"{trace.model}: a client connects, stays silent {fmt(s['delay_ms'])} ms{overslept}, sends "
          f"{len(trace.client.request)} bytes, reads the reply, closes (times from its connect; "
          f"lanes: {', '.join(f'{name} = {lane}' for lane, name in names.items())})", file=out)
    arrival_us = (trace.client.send_start - trace.client.connect_start) * 1e6
    marked = False
    for event in runs(trace.events):
        if not marked and event["start_us"] >= arrival_us:
            print(f"{fmt(arrival_us / 1000):>9} ms  {'':8} ---- the client sends its request ----", file=out)
            marked = True
        extra = "(began before the connect)" if event["start_us"] < 0 else ""
        if event["count"] > 1:
            extra = (" + ".join(f"{fmt(n)} {name}" for name, n in event["calls"].items())
                     + f", {duration(event['busy_us'])} of it inside them")
        print(f"{fmt(event['start_us'] / 1000):>9} ms  {names.get(event['lane'], event['lane']):8} "
              f"{event['call'][:22]:22} {duration(event['duration_us']):>10}  = {event['result']:<8} "
              f"{MARK[event['phase']]:4}  {extra}".rstrip(), file=out)
    print(f"{trace.model}: {s['sentence']}.", file=out)
    print(f"(from its accept to the request: {fmt(s['silence_ms'])} ms, {fmt(100 * s['waited_share'])} % of them "
          f"asleep in a system call; WAIT: waiting for the data, COPY: the call that took it in)", file=out)


def client_events(trace: Trace) -> list[dict]:
    """The client's own moments, on the same clock (lane "client"): connect, the request, the reply, close."""
    c = trace.client

    def moment(call, start, end, result):
        return {"lane": "client", "call": call, "start_us": round((start - c.connect_start) * 1e6, 1),
                "duration_us": round((end - start) * 1e6, 1), "result": str(result), "phase": "other"}
    return [moment("connect", c.connect_start, c.connected, 0),
            moment("send request", c.send_start, c.sent, len(c.request)),
            moment("read reply", c.sent, c.reply_done, len(c.request)),
            moment("close", c.reply_done, c.closed, 0)]


def write_json(trace: Trace, out=sys.stdout) -> None:
    """Every system call of the server, one object a line, then the client's moments (lane "client")."""
    for event in trace.events + client_events(trace):
        print(json.dumps({**{key: event[key] for key in FIELDS},
                          **{key: value for key, value in event.items() if key not in FIELDS}}), file=out)


def add_arguments(p) -> None:
    p.add_argument("model", help="the I/O model to trace (see 'iomodels models')")
    p.add_argument("--delay", type=float, default=0.2, metavar="SECONDS",
                   help="how long the client stays silent before its request (default: 0.2)")
    p.add_argument("--json", action="store_true", help="print every system call, one JSON object a line")
    p.add_argument("--poll-interval", type=float, default=None, metavar="SECONDS",
                   help="select: the timeout of each select() call (the server's default otherwise)")
    p.add_argument("--uring-mode", choices=URING_MODES, default=None,
                   help="io_uring: one recv per completion, or multishot (the server's default)")
    p.add_argument("--svg", default=None, metavar="FILE",
                   help="also draw the figure (the lab's, for this one model) into FILE")
    p.set_defaults(func=main)


def main(args) -> int:
    from iomodels.trace import run
    from iomodels.trace.strace import TraceError

    if not 0 < args.delay <= 30:
        print(f"iomodels trace: error: --delay must be between 0 and 30 seconds, not {args.delay}", file=sys.stderr)
        return 2
    flags = []
    if args.poll_interval is not None:
        flags += ["--poll-interval", str(args.poll_interval)]
    if args.uring_mode is not None:
        flags += ["--uring-mode", args.uring_mode]
    try:
        trace = run.take(args.model, args.delay, *flags)
    except TraceError as exc:
        print(f"iomodels trace: error: {exc}", file=sys.stderr)
        return 1
    if trace.summary.get("busy"):
        print(f"iomodels trace: warning: {trace.summary['busy']}", file=sys.stderr)
    (write_json if args.json else render)(trace)
    if args.svg:
        from iomodels.trace import figure
        figure.draw([figure.stored(trace)])[0].savefig(args.svg, format="svg", bbox_inches="tight")
    return 0
