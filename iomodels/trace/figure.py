"""The Stevens figure, drawn from traces: one row per model, a lane per thread or process, each
system call a bar of its real duration, and the two phases shaded.

A 200 ms wait and a 10 µs copy cannot share one linear axis, so the axis is broken in two: on the
left, the whole silence, in milliseconds from the client's connect; on the right, a few
milliseconds around the moment the client sent its request, in microseconds from it. Every row
uses the same two axes (small multiples), so the models compare at a glance. A call that did both
(the blocking recv; the io_uring_enter that slept until the completion) is shaded wait up to the
request and copy after it.
"""

from __future__ import annotations

import textwrap

from iomodels.lab import plotting
from iomodels.lab.measuring import fmt
from iomodels.lab.ticket_office import STORY
from iomodels.trace.phases import Trace, duration, runs

COLORS = {"wait": "#f28e2b", "copy": "#e15759", "other": "#bab0ac"}
ARRIVAL = "#4e79a7"
# The right panel: this long before the request, and at least this long after it (µs).
BEFORE_US, AFTER_US = 300.0, 1500.0


def _split(event: dict, arrival_us: float) -> list[tuple[float, float, str]]:
    """(start, width, phase) pieces of one bar, in µs from the connect."""
    start, width, phase = event["start_us"], event["duration_us"], event["phase"]
    waited = event.get("waited_us") or 0.0
    if phase == "copy" and waited > 0 and start < arrival_us < start + width:
        return [(start, arrival_us - start, "wait"), (arrival_us, start + width - arrival_us, "copy")]
    return [(start, max(width, 0.0), phase)]


def _lane_order(calls: list[dict]) -> list[int]:
    return list(dict.fromkeys(call["lane"] for call in calls))


def stored(trace: Trace) -> dict:
    """What `draw` needs of a trace (the lab keeps the same in its rows)."""
    client = trace.client
    return {"model": trace.model, "sentence": trace.summary["sentence"],
            "arrival_us": round((client.send_start - client.connect_start) * 1e6, 1),
            "sent_us": round((client.sent - client.connect_start) * 1e6, 1),
            "lanes": {str(lane): kind for lane, kind in trace.lanes.items()}, "calls": runs(trace.events)}


def draw(traces: list[dict]) -> list:
    """`traces`: one dict per model with `model`, `sentence`, `arrival_us`, `lanes` {lane: kind} and
    `calls` (event rows, runs of calls merged). One figure per model, all on the same two axes."""
    left_end = max(t["arrival_us"] for t in traces) / 1000 * 1.03
    # The latest end of a copy, and what follows it (the reply's send), on every row's right panel.
    right_end = max([AFTER_US] + [min(50_000.0, (c["start_us"] + c["duration_us"] - t["arrival_us"]) * 2)
                                  for t in traces for c in t["calls"] if c["phase"] == "copy"])
    return [_one(trace, left_end, right_end) for trace in traces]


def _one(trace: dict, left_end: float, right_end: float):
    order = _lane_order(trace["calls"]) or [0]
    with plotting.plt.rc_context(plotting.STYLE):
        fig, pair = plotting.plt.subplots(1, 2, figsize=(5.6, 0.32 * len(order) + 2.0), squeeze=True,
                                          gridspec_kw={"width_ratios": [3, 2], "wspace": 0.03},
                                          layout="constrained")
    _row(pair, trace, order, left_end, right_end)
    pair[0].set_xlabel("ms from the client's connect", fontsize=8)
    pair[1].set_xlabel("µs from the request", fontsize=8)
    handles = [plotting.plt.Rectangle((0, 0), 1, 1, color=COLORS[p]) for p in ("wait", "copy", "other")]
    fig.legend(handles + [plotting.plt.Line2D([], [], color=ARRIVAL, lw=1.5)],
               ["waiting for the data", "copying it in", "other calls", "the client's send()"],
               loc="outside lower center", ncols=4, fontsize=7)
    return fig


def _row(pair, trace: dict, order: list[int], left_end: float, right_end: float) -> None:
    left, right = pair
    arrival = trace["arrival_us"]
    y = {lane: len(order) - 1 - i for i, lane in enumerate(order)}
    calls = [dict(call) for call in trace["calls"]]
    copies = [i for i, call in enumerate(calls) if call["phase"] == "copy"]
    if copies:
        calls[copies[0]]["label"] = "copy"
        lane = calls[copies[0]]["lane"]
        after = next((c for c in calls[copies[0] + 1:] if c["lane"] == lane), None)
        if after:
            after["label"] = "after"
    for call in calls:
        for start, width, phase in _split(call, arrival):
            for ax, x, w in ((left, start / 1000, width / 1000), (right, start - arrival, width)):
                # A run of many calls (the spinner's EAGAIN recvs) is hatched: many bars, too close to part.
                ax.broken_barh([(x, w)], (y[call["lane"]] - 0.35, 0.7), facecolors=COLORS[phase],
                               edgecolors="white" if call.get("count", 1) > 1 else COLORS[phase], linewidth=0.6,
                               hatch="||||" if call.get("count", 1) > 1 else None)
        _label(left, right, call, y[call["lane"]], arrival, left_end, right_end)
    # The client's send(): the request's bytes reached the server's socket somewhere inside it.
    sending = max(trace.get("sent_us", arrival) - arrival, 0.0)
    right.axvspan(0.0, sending, color=ARRIVAL, alpha=0.18, lw=0)
    for ax, x in ((left, arrival / 1000), (right, 0.0)):
        ax.axvline(x, color=ARRIVAL, lw=1.5)
        ax.set_ylim(-0.75, len(order) - 0.25)
        ax.grid(axis="y", visible=False)
    left.set_xlim(0, left_end)
    # Around the request, 10 µs and 3 ms both matter: linear within ±100 µs, logarithmic beyond.
    right.set_xscale("symlog", linthresh=100, linscale=0.6)
    right.set_xlim(-BEFORE_US, right_end)
    right.set_xticks([t for t in (-100, 0, 100, 1000, 10_000) if -BEFORE_US <= t <= right_end])
    right.xaxis.set_major_formatter(plotting.PLAIN)
    right.xaxis.set_minor_formatter(plotting.NullFormatter())
    names = _lane_names(trace, order)
    left.set_yticks([y[lane] for lane in order], [names[lane] for lane in order], fontsize=7)
    right.set_yticks([])
    right.spines["left"].set_visible(False)
    left.spines["right"].set_linestyle((0, (2, 2)))  # the break
    left.figure.suptitle(trace["model"], x=0.01, ha="left", fontsize=11, fontweight="bold")
    left.set_title("\n".join(textwrap.wrap(trace["sentence"] + ".", 78)), loc="left", fontsize=8.5,
                   fontweight="normal")


def _lane_names(trace: dict, order: list[int]) -> dict[int, str]:
    counts: dict[str, int] = {}
    names = {}
    for lane in order:
        kind = trace["lanes"].get(str(lane), trace["lanes"].get(lane, "thread"))
        counts[kind] = counts.get(kind, 0) + 1
        names[lane] = "main" if kind == "main" else f"{kind} {counts[kind]}"
    return names


def _label(left, right, call: dict, y: float, arrival: float, left_end: float, right_end: float) -> None:
    """The call's name and result on its bar where the bar can hold it (left); on the right, the
    copy above its bar and the call right after it below, so that labels do not overlap."""
    what = call["call"] if call.get("count", 1) == 1 else f"{fmt(call['count'])} × {call['call']}"
    start_ms, width_ms = call["start_us"] / 1000, call["duration_us"] / 1000
    beyond = call["start_us"] + call["duration_us"] > arrival + right_end
    text = (f"{what}, still blocked when the scene ends" if beyond
            else f"{what} → {call['result']}  ({duration(call['duration_us'])})")
    visible = min(start_ms + width_ms, left_end) - max(start_ms, 0)
    if visible > left_end * 0.3:
        left.text(max(start_ms, 0) + visible / 2, y, text, ha="center", va="center", fontsize=7, clip_on=True,
                  bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0, "pad": 1.5})
    offset = call["start_us"] - arrival
    if call.get("label") in ("copy", "after") and -BEFORE_US <= offset <= right_end:
        above = call["label"] == "copy"
        right.text(max(offset, -BEFORE_US), y + (0.4 if above else -0.4), f"{call['call']} → {call['result']}",
                   fontsize=6.5, va="bottom" if above else "top", clip_on=False,
                   fontweight="bold" if above else "normal")


# Section 1.5: Lao Li's train ticket, for the models the tutorial does not name by family.
STORIES = {**STORY, "threaded": "queues (a clerk for each traveller)", "forking": "queues (an office for each traveller)",
           "threadpool": "queues at one of a few counters",
           "poll": "phones the scalper and stays on the line (this server sets no timeout)", "epoll-et": STORY["epoll"],
           "sigio": "leaves his number; the ring wakes him, he fetches it", "asyncio": STORY["epoll"],
           "uvloop": STORY["epoll"]}


def story(model: str) -> str:
    return STORIES.get(model, "")


def ticket_office_line(r: dict) -> str:
    """The same as a sentence, for the page's text."""
    woke = "never slept" if not r["wakeups"] else f"woke {fmt(r['wakeups'])} time{'s' if r['wakeups'] != 1 else ''}"
    copy = r["copy_call"] + (" (the kernel had copied)" if r["kernel_copied"] else "")
    return (f"{r['model']} ({story(r['model'])}): waited in {r['waited_in']}, {fmt(r['calls_while_waiting'])} "
            f"call(s) while waiting, {fmt(r['found_nothing'])} found nothing; the copy: {copy}; {woke}.")


def ticket_office(rows: list[dict]):
    """The tutorial's summary (section 1.5) rebuilt from the traces: one line per model."""
    header = ("model", "Lao Li…", "waited in", "calls while\nwaiting", "found\nnothing", "the copy", "woke")
    cells = [[r["model"], "\n".join(textwrap.wrap(story(r["model"]), 24)), r["waited_in"].replace(", ", "\n"), fmt(r["calls_while_waiting"]), fmt(r["found_nothing"]),
              r["copy_call"] + ("\n(kernel copied)" if r["kernel_copied"] else ""),
              fmt(r["wakeups"]) if r["wakeups"] else "never\nslept"]
             for r in rows]
    fig, ax = plotting.figure("The ticket office (§1.5), from the traces", size=(6.4, 0.5 * len(rows) + 0.9))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=header, loc="upper left", cellLoc="left",
                     colWidths=[0.13, 0.26, 0.17, 0.1, 0.09, 0.17, 0.08])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 2.2)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor("#d1d9e0")
        if r == 0:
            cell.set_height(cell.get_height() * 1.2)
            cell.set_text_props(fontweight="bold")
    return fig


def overhead_figures(cost: dict, rows: list[dict]) -> list:
    """What tracing costs a call, and whether it stretched the waits (it should not)."""
    calls = plotting.bars(f"One recv() → EAGAIN: ×{fmt(cost['slowdown'])} slower under strace",
                          ["untraced", "under strace"], [cost["untraced_us_per_call"], cost["traced_us_per_call"]],
                          "µs per call (log)", log=True, suffix=" µs", colors=["#59a14f", "#e15759"])
    sleepers = [row for row in rows if row["wakeups"]]
    fig, ax = plotting.figure("Traced: the silence, and how much of it the server slept", ylabel="ms")
    xs = range(len(sleepers))
    ax.bar([x - 0.2 for x in xs], [row["silence_ms"] for row in sleepers], 0.4, color="#4e79a7",
           label="the silence (accept → request)")
    ax.bar([x + 0.2 for x in xs], [row.get("asleep_ms", row["waited_ms"]) for row in sleepers], 0.4,
           color=COLORS["wait"], label="of it, asleep in the model's wait")
    ax.set_xticks(list(xs), [row["model"] for row in sleepers])
    ax.tick_params(axis="x", labelrotation=30)
    fig.legend(loc="outside lower center", fontsize=8, ncols=2)
    return [calls, fig]


def not_drawn(reason: str):
    """A placeholder where the figures would be, saying why they are not."""
    fig, ax = plotting.figure("Who waits where: the figures were not drawn", size=(6.4, 1.6))
    ax.axis("off")
    ax.text(0, 0.5, "\n".join(textwrap.wrap(reason, 80)), fontsize=9, va="center", transform=ax.transAxes)
    return fig
