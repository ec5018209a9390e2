"""Two measurements of the multiplexers. At rest: one idle client, a few seconds, and the server's
count of its waits (`select`, `poll`, `epoll_wait`…) and of the waits that returned with nothing
to do. `select` with the tutorial's 0.5 s interval blocks in the middle, on all sockets at once,
and wakes up twice a second just to ask again; a multiplexer with nothing to time out sleeps until
something happens. At the limit: a crowd of clients bigger than select's fixed-size descriptor
sets (FD_SETSIZE = 1024). Each client asks once; `select` cannot watch a descriptor numbered 1024
or more, so the clients that got such numbers are refused, while `poll` and `epoll` answer all."""

from __future__ import annotations

from iomodels.serving import models
from iomodels.lab import clients, plotting
from iomodels.lab.measuring import at_rest, medians
from iomodels.lab.verdicts import Compare, Rule, from_rows, share

TITLE = "select blocks in the middle and wakes to ask"
SECTION = "1.3"
CLAIM = ("With multiplexing the process blocks in select(), in the middle, for all sockets at once; "
         "select asks every 0.5 s whether data is ready.")
SCALES = {"tiny": {"window": 0.6, "crowd": 1050}, "quick": {"window": 1.0, "crowd": 1100},
          "full": {"window": 5.0, "crowd": 2000}}
INTERVAL = 0.5
LIMIT_MODELS = ("select", "poll", "epoll")
# At rest, the rounds after the first are for the two whose wake-ups decide.
DECIDING = ("select", "epoll")
RULE = Rule((
    Compare("select: empty wake-ups per second", "at_least", 1 / INTERVAL / 2, unit="/s"),
    Compare("epoll: empty wake-ups per second", "less", 0.5, unit="/s"),
    Compare("select: clients refused for a descriptor ≥ 1024", "more", 0),
    Compare("select: serving again once the crowd left", "at_least", 100, unit=" %"),
    Compare("epoll: share of the crowd answered", "at_least", 100, unit=" %"),
), words=f"at rest, select ({INTERVAL:g} s interval) wakes up empty at least once a second and epoll less than "
         "once every 2 s; with more clients than FD_SETSIZE, select refuses those numbered ≥ 1024 and keeps "
         "serving, epoll answers them all (the crowd's counts are measured once: they do not vary)")


def waiting_models(ctx, record) -> list[str]:
    """The models that sleep in one call for many sockets (not the blocking family nor the spinner)."""
    return [name for name in ctx.models(record) if models.info(name).section not in ("1.1", "1.2")]


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    resting = waiting_models(ctx, record)
    crowded = ctx.models(record, LIMIT_MODELS)
    pairs = [(0, model) for model in resting]
    pairs += [(run, model) for run in range(1, ctx.repeats) for model in resting if model in DECIDING]
    for run, model in ctx.each(f"{TITLE} (at rest)", pairs, lambda pair: f"{pair[1]} (run {pair[0] + 1})"):
        flags = ("--poll-interval", str(INTERVAL)) if model == "select" else ()
        record.rows.append({"kind": "at rest", "run": run, **at_rest(ctx, model, p["window"], *flags)})
    for model in ctx.each(f"{TITLE} ({p['crowd']} clients)", crowded):
        with ctx.server(model) as server, clients.Crowd(server.address, p["crowd"]) as crowd:
            answered = crowd.ping_all(10.0)
            counters = server.counters()
            connected = crowd.opened
            crowd.close()
            with clients.connect(server.address) as late:  # serving again once descriptors are free?
                still_serving = clients.ask(late, b"late", 5.0) is not None
        record.rows.append({"kind": "crowd", "model": model, "clients": p["crowd"], "connected": connected,
                            "answered": answered, "answered_percent": round(100 * answered / p["crowd"], 1),
                            "refused_fd_too_high": counters["rejected_fd_too_high"],
                            "alive_and_serving_after": still_serving})


def judge(record):
    crowd = [row for row in record.rows if row["kind"] == "crowd"]
    return RULE.decide({
        "select: empty wake-ups per second": from_rows(record.rows, "empty_wakeups_per_s", kind="at rest",
                                                       model="select"),
        "epoll: empty wake-ups per second": from_rows(record.rows, "empty_wakeups_per_s", kind="at rest",
                                                      model="epoll"),
        "select: clients refused for a descriptor ≥ 1024": from_rows(crowd, "refused_fd_too_high", model="select"),
        "select: serving again once the crowd left": share([r for r in crowd if r["model"] == "select"],
                                                           "alive_and_serving_after"),
        "epoll: share of the crowd answered": from_rows(crowd, "answered_percent", model="epoll"),
    })


def plots(record):
    rest = medians([row for row in record.rows if row["kind"] == "at rest"], "model")
    crowd = [row for row in record.rows if row["kind"] == "crowd"]
    figures = [plotting.grouped_bars(
        "Waits per second with one idle client", [row["model"] for row in rest],
        {"all waits": [row["wait_calls_per_s"] for row in rest],
         "empty wake-ups": [row["empty_wakeups_per_s"] for row in rest]}, "per second")]
    if crowd:
        figures.append(plotting.grouped_bars(
            f"{crowd[0]['clients']:,} clients, one request each", [row["model"] for row in crowd],
            {"answered": [row["answered"] for row in crowd],
             "refused (fd ≥ 1024)": [row["refused_fd_too_high"] for row in crowd]}, "clients"))
    return figures
