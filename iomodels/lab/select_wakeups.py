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
from iomodels.lab.measuring import at_rest, fmt
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "select blocks in the middle and wakes to ask"
SECTION = "1.3"
CLAIM = ("With multiplexing the process blocks in select(), in the middle, for all sockets at once; "
         "select asks every 0.5 s whether data is ready.")
SCALES = {"tiny": {"window": 0.6, "crowd": 1050}, "quick": {"window": 2.0, "crowd": 1100},
          "full": {"window": 5.0, "crowd": 2000}}
INTERVAL = 0.5
LIMIT_MODELS = ("select", "poll", "epoll")


def waiting_models(ctx, record) -> list[str]:
    """The models that sleep in one call for many sockets (not the blocking family nor the spinner)."""
    return [name for name in ctx.models(record) if models.info(name).section not in ("1.1", "1.2")]


def measure(ctx, record) -> None:
    p = ctx.params(SCALES)
    resting = waiting_models(ctx, record)
    crowded = ctx.models(record, LIMIT_MODELS)
    for model in ctx.each(f"{TITLE} (at rest)", resting):
        flags = ("--poll-interval", str(INTERVAL)) if model == "select" else ()
        record.rows.append({"kind": "at rest", **at_rest(ctx, model, p["window"], *flags)})
    for model in ctx.each(f"{TITLE} ({p['crowd']} clients)", crowded):
        with ctx.server(model) as server, clients.Crowd(server.address, p["crowd"]) as crowd:
            answered = crowd.ping_all(10.0)
            counters = server.counters()
            connected = crowd.opened
            crowd.close()
            with clients.connect(server.address) as late:  # serving again once descriptors are free?
                still_serving = clients.ask(late, b"late", 5.0) is not None
        record.rows.append({"kind": "crowd", "model": model, "clients": p["crowd"], "connected": connected,
                            "answered": answered, "refused_fd_too_high": counters["rejected_fd_too_high"],
                            "alive_and_serving_after": still_serving})


def judge(record):
    rest = {row["model"]: row for row in record.rows if row["kind"] == "at rest"}
    crowd = {row["model"]: row for row in record.rows if row["kind"] == "crowd"}
    if "select" not in rest or "epoll" not in rest or "select" not in crowd or "epoll" not in crowd:
        return UNKNOWN, "needs the select and epoll models"
    sel, epl = rest["select"], rest["epoll"]
    wakes = sel["empty_wakeups_per_s"] >= 1 / INTERVAL / 2 and epl["empty_wakeups_per_s"] < 0.5
    limit = (crowd["select"]["refused_fd_too_high"] > 0 and crowd["select"]["alive_and_serving_after"]
             and crowd["epoll"]["answered"] == crowd["epoll"]["clients"])
    deciding = (f"at rest: select ({INTERVAL:g} s interval) {fmt(sel['wait_calls_per_s'])} waits/s, "
                f"{fmt(sel['empty_wakeups_per_s'])} of them empty; epoll {fmt(epl['empty_wakeups_per_s'])} empty/s. "
                f"{crowd['select']['clients']} clients: select answered {crowd['select']['answered']}, refused "
                f"{crowd['select']['refused_fd_too_high']} with fd ≥ 1024 and kept serving; "
                f"epoll answered {crowd['epoll']['answered']}")
    return (HOLDS if wakes and limit else FAILS), deciding


def plots(record):
    rest = [row for row in record.rows if row["kind"] == "at rest"]
    crowd = [row for row in record.rows if row["kind"] == "crowd"]
    figures = [plotting.grouped_bars(
        "Waits per second with one idle client", [row["model"] for row in rest],
        {"all waits": [row["wait_calls_per_s"] for row in rest],
         "empty wake-ups": [row["empty_wakeups_per_s"] for row in rest]}, "per second")]
    if crowd:
        figures.append(plotting.grouped_bars(
            f"{crowd[0]['clients']} clients, one request each", [row["model"] for row in crowd],
            {"answered": [row["answered"] for row in crowd],
             "refused (fd ≥ 1024)": [row["refused_fd_too_high"] for row in crowd]}, "clients"))
    return figures
