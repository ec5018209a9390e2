"""`iomodels trace MODEL`: the scenario's system calls as a timeline in the terminal, or as JSON lines.

A run of identical calls (the spinner's thousand recvs that return EAGAIN) is one line in the
terminal ("× 1,097"); `--json` prints every call, one object a line.
"""

from __future__ import annotations

import collections
import json
import sys

from iomodels.lab.measuring import fmt
from iomodels.trace.phases import Trace, duration

MARK = {"wait": "WAIT", "copy": "COPY", "other": ""}
FIELDS = ("lane", "call", "start_us", "duration_us", "result", "phase")


def _kind(event: dict) -> tuple:
    """Calls that failed the same way (EAGAIN) run together whatever their names: a sweep of
    accept + recv that both found nothing is one run."""
    if event["result"].startswith("E") and event["phase"] != "copy":
        return ("failed", event["result"])
    return (event["call"], event["result"], event["phase"])


def runs(events: list[dict], shortest: int = 3) -> list[dict]:
    """Consecutive calls of one lane of the same kind, `shortest` or more of them, become one: start
    of the first, `duration_us` to the end of the last, `busy_us` the time spent inside them,
    `count`, and `calls` by name ("accept4+recvfrom" for a sweep); a wait among them makes it a wait."""
    out: list[dict] = []
    group: list[dict] = []

    def flush():
        if len(group) >= shortest:
            first, last = group[0], group[-1]
            by_name = collections.Counter(e["call"] for e in group)
            phases = {e["phase"] for e in group}
            out.append({**first, "call": "+".join(by_name), "calls": dict(by_name), "count": len(group),
                        "phase": "wait" if "wait" in phases else first["phase"],
                        "busy_us": round(sum(e["duration_us"] for e in group), 1),
                        "duration_us": round(last["start_us"] + last["duration_us"] - first["start_us"], 1)})
        else:
            out.extend({**e, "count": 1, "busy_us": e["duration_us"]} for e in group)
        group.clear()

    # Runs are per lane: another thread's calls interleave without breaking them.
    for lane in dict.fromkeys(e["lane"] for e in events):
        for event in (e for e in events if e["lane"] == lane):
            if group and _kind(event) != _kind(group[-1]):
                flush()
            group.append(event)
        flush()
    return sorted(out, key=lambda e: e["start_us"])


def lane_names(trace: Trace) -> dict[int, str]:
    names, counts = {}, {}
    for lane, kind in trace.lanes.items():
        counts[kind] = counts.get(kind, 0) + 1
        names[lane] = "main" if kind == "main" else f"{kind} {counts[kind]}"
    return names


def render(trace: Trace, out=sys.stdout) -> None:
    s = trace.summary
    names = lane_names(trace)
    print(f"{trace.model}: a client connects, stays silent {fmt(s['delay_ms'])} ms, sends "
          f"{len(trace.client.request)} bytes, reads the reply, closes (times from its connect; "
          f"lanes: {', '.join(f'{name} = {lane}' for lane, name in names.items())})", file=out)
    arrival_us = (trace.client.send_start - trace.client.connect_start) * 1e6
    marked = False
    for event in runs(trace.events):
        if not marked and event["start_us"] >= arrival_us:
            print(f"{fmt(arrival_us / 1000):>9} ms  {'':8} ---- the client sends its request ----", file=out)
            marked = True
        extra = ""
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
    p.add_argument("--uring-mode", default=None, help="io_uring: oneshot or multishot (the server's default)")
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
    (write_json if args.json else render)(trace)
    return 0
