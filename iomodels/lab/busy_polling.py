"""Each model serves one client that was answered once and then says nothing for a few seconds.
The lab reads the server's CPU time (its whole process tree) and its counters before and after.
The non-blocking server never waits: it calls `recv()` on every socket in a loop and almost every
call comes back with EAGAIN ("no data yet, ask again"), so one idle client keeps a core busy. The
models that wait, in `recv()`, in `select()`/`epoll_wait()` or for a completion, sleep in the
kernel until there is something to do, and use next to no CPU."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import at_rest, fmt
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "Busy polling burns a core"
SECTION = "1.2"
CLAIM = ("Non-blocking I/O returns at once when there is no data, so the caller must keep asking: "
         "the process polls instead of sleeping.")
SCALES = {"tiny": {"window": 0.5}, "quick": {"window": 2.0}, "full": {"window": 5.0}}
# The spinner must use this share of a core (on a busy two-core machine it may get little more),
# and this many times the CPU of the busiest model that waits; a sleeping server stays under SLEEPING.
BURNING, TIMES, SLEEPING = 25.0, 20, 10.0


def measure(ctx, record) -> None:
    window = ctx.params(SCALES)["window"]
    names = ctx.models(record)
    for model in ctx.each(TITLE, names):
        record.rows.append(at_rest(ctx, model, window))


def judge(record):
    rows = {row["model"]: row for row in record.rows}
    spinner = rows.pop("nonblocking", None)
    if spinner is None or not rows:
        return UNKNOWN, "needs the nonblocking model and at least one other"
    hottest = max(rows.values(), key=lambda row: row["cpu_percent"])
    holds = (spinner["cpu_percent"] >= max(BURNING, TIMES * hottest["cpu_percent"])
             and hottest["cpu_percent"] < SLEEPING)
    deciding = (f"one idle client: nonblocking used {fmt(spinner['cpu_percent'])}% of a core and got "
                f"{fmt(spinner['recv_eagain_per_s'])} EAGAIN/s; the busiest other model ({hottest['model']}) used "
                f"{fmt(hottest['cpu_percent'])}% (rule: ≥ {BURNING:g}% and ≥ {TIMES}× the others, "
                f"which stay < {SLEEPING:g}%)")
    return (HOLDS if holds else FAILS), deciding


def plots(record):
    rows = record.rows
    names = [row["model"] for row in rows]
    return [
        plotting.bars("Server CPU with one idle client", names, [row["cpu_percent"] for row in rows],
                      "% of one core", suffix="%"),
        plotting.bars("recv() calls that found no data, per second", names,
                      [row["recv_eagain_per_s"] for row in rows], "EAGAIN per second (log)", log=True),
    ]
