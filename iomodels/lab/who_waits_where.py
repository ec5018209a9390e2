"""Stevens' figures 6.1-6.6 and the tutorial's pictures, drawn from real traces instead of by hand.
For every model, one scripted scene runs against its real server while strace records each system
call from the kernel's side: a client connects, stays silent (the delay), sends one request, reads
the reply, closes. Each call of that connection's life is a bar of its real duration, in a lane for
its thread or process, and is shaded as waiting for the data (inside recv for the blocking family;
a loop of recvs answered EAGAIN for the spinner; inside select/poll/epoll_wait for the
multiplexers; inside rt_sigtimedwait for sigio; inside io_uring_enter for io_uring) or copying it
into the process (the recv that returned the bytes; for io_uring, no recv at all: the kernel had
copied them, and the io_uring_enter that returned with the completion stands for the copy). The
select server runs with a poll interval of a quarter of the delay, so its periodic questions show.
Tracing slows every system call, measured below; a wait is not slowed (a sleeping call sleeps as
long), which the page checks against the scene's silence. Same scene: `iomodels trace MODEL`."""

from __future__ import annotations

from iomodels.serving import models
from iomodels.lab.measuring import fmt
from iomodels.lab.runner import UNKNOWN
from iomodels.lab.verdicts import Compare, Rule, share
from iomodels.trace import figure, overhead, run
from iomodels.trace.strace import TraceError, check_tracer

TITLE = "Who waits where"
SECTION = "1.1-1.4"
CLAIM = ("Blocking I/O blocks through both phases, waiting for the data and copying it; non-blocking "
         "I/O asks again and again, then blocks only for the copy; multiplexing blocks in select, then "
         "copies in recvfrom; asynchronous I/O blocks in neither: the kernel copies, then notifies.")
SCALES = {"tiny": {"delay": 0.15, "attempts": 2, "overhead_calls": 500},
          "quick": {"delay": 0.2, "attempts": 4, "overhead_calls": 5000},
          "full": {"delay": 0.5, "attempts": 4, "overhead_calls": 20000}}
IN_SHAPE = "models traced in the tutorial's shape"
RULE = Rule((Compare(IN_SHAPE, "at_least", 100.0, unit=" %"),),
            words="every model traced waits and copies where the tutorial says: blocking in one recv, "
                  "nonblocking in a loop of EAGAIN recvs, the multiplexers and sigio in their wait then a "
                  "recv of their own, io_uring in io_uring_enter with no recv")
KEPT = ("model", "waited_in", "calls_while_waiting", "found_nothing", "copy_call", "kernel_copied", "copy_bytes",
        "copy_us", "returned_after_send_us", "wakeups", "delay_ms", "silence_ms", "ready_ms", "waited_ms", "asleep_ms", "waited_share", "attempts",
        "sentence")


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    try:
        check_tracer()
    except TraceError as exc:
        record.notes.append(f"Figures not drawn: {exc}.")
        record.rows.append({"kind": "not drawn", "reason": str(exc)})
        record.skipped.extend({"model": name, "reason": f"figure not drawn: {exc}"} for name in ctx.models(record))
        return
    for model in ctx.each(TITLE, ctx.models(record)):
        flags = ("--poll-interval", f"{p['delay'] / 4:g}") if model == "select" else ()
        try:
            trace = run.take(model, p["delay"], *flags, attempts=p["attempts"])
        except TraceError as exc:
            record.skipped.append({"model": model, "reason": f"figure not drawn: {exc}"})
            continue
        drawn = figure.stored(trace)
        record.rows.append({"kind": "trace", **{key: trace.summary[key] for key in KEPT},
                            "arrival_us": drawn["arrival_us"], "sent_us": drawn["sent_us"],
                            "lanes": " ".join(f"{lane}:{kind}" for lane, kind in drawn["lanes"].items())})
        for call in drawn["calls"]:
            record.rows.append({"kind": "call", "model": model, **{key: call.get(key) for key in (
                "lane", "call", "start_us", "duration_us", "result", "phase", "count", "busy_us", "waited_us")}})
    traced = [row for row in record.rows if row["kind"] == "trace"]
    record.notes.extend(f"Ticket office, {figure.ticket_office_line(row)}" for row in traced)
    ctx.begin(f"{TITLE}: the cost of tracing", 1)
    cost = overhead.measure(p["overhead_calls"])
    record.rows.append({"kind": "overhead", **cost})
    record.notes.append(
        f"The cost of tracing: one recv() answered EAGAIN took {fmt(cost['untraced_us_per_call'])} µs on its own and "
        f"{fmt(cost['traced_us_per_call'])} µs under strace (×{fmt(cost['slowdown'])}, median of {cost['rounds']} "
        f"interleaved rounds of {fmt(cost['calls'])} calls). So the spinner's count of EAGAIN recvs here is far "
        "below its untraced count (each traced call is slower), and the short calls' bars are stretched; the "
        "waits are not: a call asleep in the kernel sleeps as long, traced or not (the last plot).")


EXPECTED = {"1.1": "waits and copies in one recv", "1.2": "never sleeps: recvs answered EAGAIN",
            "1.4": "waits in io_uring_enter, no recv of its own"}


def _shape_holds(row: dict) -> bool:
    section = models.info(row["model"]).section if row["model"] in models.names() else ""
    same_call = row["calls_while_waiting"] == 1 and row["waited_in"] == row["copy_call"]
    if row["model"] == "io_uring":
        return row["kernel_copied"] and "io_uring_enter" in row["waited_in"]
    if section == "1.1":
        return same_call and not row["kernel_copied"]
    if row["model"] == "nonblocking":
        return row["wakeups"] == 0 and row["found_nothing"] > 1
    if row["model"] == "sigio":
        return "rt_sigtimedwait" in row["waited_in"] and not row["kernel_copied"]
    # The multiplexers and the event loops: asleep in a wait for many sockets, then a copy of their own.
    return row["wakeups"] >= 1 and not same_call and not row["kernel_copied"]


def judge(record):
    traces = [row for row in record.rows if row["kind"] == "trace"]
    if not traces:
        return UNKNOWN, (record.skipped[0]["reason"] if record.skipped else "no model was traced")
    wrong = [row["model"] for row in traces if not _shape_holds(row)]
    shares = [row["waited_share"] for row in traces if row["wakeups"]]
    parts = [f"{len(traces)} models traced; " + ("every one waits and copies where the tutorial says"
                                                  if not wrong else f"not as the tutorial says: {', '.join(wrong)}")]
    by = {row["model"]: row for row in traces}
    for name in ("blocking", "nonblocking", "epoll", "io_uring"):
        if name in by:
            parts.append(f"{name}: {by[name]['sentence']}")
    if shares:
        low = min((row for row in traces if row["wakeups"]), key=lambda row: row["waited_share"])
        parts.append(f"the sleeping models were asleep {fmt(100 * min(shares))}-{fmt(100 * max(shares))} % of the "
                     "silence" + (", so tracing did not stretch the waits" if low["waited_share"] >= 0.8 else
                                  f" ({low['model']} the least: the rest of its silence it spent in user space "
                                  "or waiting for a CPU, traced)"))
    verdict, decided = RULE.decide({IN_SHAPE: share([{"ok": _shape_holds(row)} for row in traces], "ok")})
    return verdict, "; ".join([decided, *parts])


def plots(record):
    traces = [row for row in record.rows if row["kind"] == "trace"]
    if not traces:
        reasons = [row["reason"] for row in record.rows if row["kind"] == "not drawn"]
        return [figure.not_drawn(reasons[0] if reasons else "no model could be traced")]
    stored = []
    for row in traces:
        lanes = dict(item.split(":") for item in row["lanes"].split())
        stored.append({"model": row["model"], "sentence": row["sentence"], "arrival_us": row["arrival_us"],
                       "sent_us": row.get("sent_us", row["arrival_us"]),
                       "lanes": lanes, "calls": [c for c in record.rows if c["kind"] == "call"
                                                 and c["model"] == row["model"]]})
    figures = [*figure.draw(stored), figure.ticket_office(traces)]
    cost = next((row for row in record.rows if row["kind"] == "overhead"), None)
    if cost:
        figures += figure.overhead_figures(cost, traces)
    return figures
