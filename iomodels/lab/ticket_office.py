"""The tutorial ends with Lao Li buying a train ticket that only turns up after three days: he can
queue at the station (blocking), go back every twelve hours to ask (non-blocking), hire a scalper
and phone him every six hours (select/poll), hire one who calls back when he has it (epoll), or
leave his number at the office and get the ticket delivered (asynchronous I/O). Here the ticket
is one request: a connected client says nothing for a while (the three days), then asks once, and
the lab counts what each server did in between. Trips to the station are `recv()` calls (those
that found nothing are EAGAIN); phone calls to the scalper are waits in select/poll/epoll/
io_uring_enter (those with no news are empty wake-ups); notifications are readiness events or
completions. Every figure below comes from the servers' counters in this run."""

from __future__ import annotations

import time

from iomodels import procstats
from iomodels.lab import clients, plotting
from iomodels.lab.measuring import SETTLE, medians
from iomodels.lab.verdicts import Compare, Rule, from_rows
from iomodels.lab.servers import ServerFailed, delta

TITLE = "The ticket-office analogy"
SECTION = "1.5"
CLAIM = ("Blocking: queue at the station for three days. Non-blocking: many trips to ask. select/poll: "
         "a scalper you keep phoning. epoll: a scalper who calls you. Asynchronous: the ticket is "
         "delivered; no trips to ask, no calls.")
SCALES = {"tiny": {"wait": 0.4}, "quick": {"wait": 0.8}, "full": {"wait": 3.0}}
RULE = Rule((
    Compare("blocking: waits and recv() that found nothing", "less", 1),
    Compare("nonblocking: recv() that found nothing", "more", "select: waits with no news", margin=9),
    Compare("select: waits with no news", "more", "epoll: waits with no news"),
    Compare("io_uring: empty checks", "less", 1, optional=True),
    Compare("io_uring: completions", "at_least", 1, optional=True),
), words="while one client waits, then asks once: blocking makes no empty trip and no call; nonblocking's "
         "empty trips are at least 10× select's calls with no news, which outnumber epoll's; io_uring makes no "
         "empty check and gets the ticket as a completion")
# The tutorial's story for each model (its words, summarised; the numbers beside them are measured).
STORY = {
    "blocking": "queues at the station until the ticket comes",
    "nonblocking": "goes back to the station again and again to ask",
    "select": "phones the scalper at regular intervals",
    "poll": "phones the scalper at regular intervals",
    "epoll": "the scalper calls when he has the ticket",
    "io_uring": "the office delivers the ticket to his door",
}


def measure(ctx, record) -> None:
    """Each model's server, `ctx.repeats` rounds on one connection: the wait, then the one request."""
    wait = ctx.params(SCALES)["wait"]
    names = ctx.models(record, list(STORY))
    for model in ctx.each(TITLE, names):
        with ctx.server(model) as server, clients.connect(server.address) as sock:
            if clients.ask(sock, b"hello", 5.0) is None:
                raise ServerFailed(f"{model} did not answer")
            for run in range(ctx.repeats):
                time.sleep(SETTLE)
                before = server.counters()
                with procstats.Window(server.pid) as cpu:
                    time.sleep(wait)  # the three days
                    answered = clients.ask(sock, b"ticket", 5.0)
                    time.sleep(SETTLE)
                counted = delta(before, server.counters())
                record.rows.append({
                    "model": model, "run": run, "story": STORY[model], "waited_s": wait,
                    "answered": answered is not None,
                    "trips_to_the_station": counted["recv_calls"],
                    "trips_that_found_nothing": counted["recv_eagain"],
                    "calls_to_the_scalper": counted["wait_calls"],
                    # nonblocking counts its empty sweeps as empty wake-ups, but it never phones anyone.
                    "calls_with_no_news": min(counted["empty_wakeups"], counted["wait_calls"]),
                    "notifications": counted["events"] + counted["signals"],
                    "completions": counted["completions"],
                    "cpu_ms": round(1000 * cpu.cpu_s, 1),
                })


def judge(record):
    rows = record.rows
    blocking = [dict(row, empty=row["trips_that_found_nothing"] + row["calls_to_the_scalper"])
                for row in record.rows_for(model="blocking")]
    verdict, text = RULE.decide({
        "blocking: waits and recv() that found nothing": from_rows(blocking, "empty"),
        "nonblocking: recv() that found nothing": from_rows(rows, "trips_that_found_nothing", model="nonblocking"),
        "select: waits with no news": from_rows(rows, "calls_with_no_news", model="select"),
        "epoll: waits with no news": from_rows(rows, "calls_with_no_news", model="epoll"),
        "io_uring: empty checks": from_rows(rows, "trips_that_found_nothing", model="io_uring"),
        "io_uring: completions": from_rows(rows, "completions", model="io_uring"),
    })
    wait = rows[0]["waited_s"] if rows else 0
    return verdict, f"{wait:g} s of waiting, then one request: {text}"


def plots(record):
    rows = medians(record.rows, "model")
    names = [row["model"] for row in rows]
    return [plotting.grouped_bars(
        "What each server did while one client waited, then asked once", names,
        {"trips to the station (recv)": [row["trips_to_the_station"] for row in rows],
         "trips that found nothing (EAGAIN)": [row["trips_that_found_nothing"] for row in rows],
         "calls to the scalper (waits)": [row["calls_to_the_scalper"] for row in rows],
         "calls with no news (empty wake-ups)": [row["calls_with_no_news"] for row in rows]},
        "count (log)", log=True)]
