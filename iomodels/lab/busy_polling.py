"""Each model serves one client that was answered once and then says nothing for a few seconds.
The lab reads the server's CPU time (its whole process tree) and its counters before and after.
The non-blocking server never waits: it calls `recv()` on every socket in a loop and almost every
call comes back with EAGAIN ("no data yet, ask again"), so one idle client keeps a core busy. The
models that wait, in `recv()`, in `select()`/`epoll_wait()` or for a completion, sleep in the
kernel until there is something to do, and use next to no CPU."""

from __future__ import annotations

from iomodels.lab import plotting
from iomodels.lab.measuring import at_rest, fmt, medians
from iomodels.lab.verdicts import Compare, Rule, samples

TITLE = "Busy polling burns a core"
SECTION = "1.2"
CLAIM = ("Non-blocking I/O returns at once when there is no data, so the caller must keep asking: "
         "the process polls instead of sleeping.")
SCALES = {"tiny": {"window": 0.5}, "quick": {"window": 0.6}, "full": {"window": 5.0}}
# The spinner must use this share of a core (on a busy two-core machine it may get little more),
# and this many times the CPU of the busiest model that waits; a sleeping server stays under SLEEPING.
BURNING, TIMES, SLEEPING = 25.0, 20, 10.0
SPINNER, BUSIEST = "nonblocking: CPU", "busiest waiting model: CPU"
RULE = Rule((
    Compare(SPINNER, "more", BURNING, unit=" % of a core"),
    Compare(SPINNER, "more", BUSIEST, margin=TIMES - 1, unit=" %"),
    Compare(BUSIEST, "less", SLEEPING, unit=" % of a core"),
), words=f"with one idle client, nonblocking uses more than {BURNING:g} % of a core and at least {TIMES}× the "
         f"busiest model that waits, which stays under {SLEEPING:g} %")
# After one round over every model, the rounds that decide: the spinner and the busiest sleepers.
CONTENDERS = 2


def measure(ctx, record) -> None:
    window = ctx.params(SCALES)["window"]
    names = ctx.models(record)
    for model in ctx.each(TITLE, names):
        record.rows.append({"run": 0, **at_rest(ctx, model, window)})
    others = sorted((row for row in record.rows if row["model"] != "nonblocking"), key=lambda row: -row["cpu_percent"])
    deciding = [name for name in names if name == "nonblocking"] + [row["model"] for row in others[:CONTENDERS]]
    for run in range(1, ctx.repeats):
        for model in ctx.each(f"{TITLE} (run {run + 1})", deciding):
            record.rows.append({"run": run, **at_rest(ctx, model, window)})


def judge(record):
    runs = sorted({row["run"] for row in record.rows})
    others = [row for row in record.rows if row["model"] != "nonblocking"]
    verdict, text = RULE.decide({
        SPINNER: samples(row["cpu_percent"] for row in record.rows_for(model="nonblocking")),
        BUSIEST: samples(max((row["cpu_percent"] for row in others if row["run"] == run), default=None)
                         for run in runs),
    })
    spinner = medians(record.rows_for(model="nonblocking"), "model")
    if spinner:
        text += f"; nonblocking's recv() found no data {fmt(spinner[0]['recv_eagain_per_s'])} times a second"
    return verdict, text


def plots(record):
    rows = medians(record.rows, "model")
    names = [row["model"] for row in rows]
    return [
        plotting.bars("Server CPU with one idle client", names, [row["cpu_percent"] for row in rows],
                      "% of one core", suffix=" %"),
        plotting.bars("recv() calls that found no data, per second", names,
                      [row["recv_eagain_per_s"] for row in rows], "EAGAIN per second (log)", log=True),
    ]
