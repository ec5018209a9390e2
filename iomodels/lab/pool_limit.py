"""`threadpool --threads 4`: four clients connect, are answered once, and stay connected without a
word. Each pool thread now sleeps in `recv()` on one of them. A fifth client connects (the kernel
completes its handshake and queues it for `accept()`) and asks: nobody is left to accept it, so
it waits. When the lab closes one of the four, that pool thread returns to `accept()`, takes the
fifth client and answers it. `threaded`, which starts a thread for every client, is measured the
same way for contrast. The pool saves creating threads, but its size is a hard limit on how many
clients are served at once, however idle they are."""

from __future__ import annotations

import time

from iomodels.lab import clients, plotting
from iomodels.lab.measuring import medians
from iomodels.lab.verdicts import Compare, Rule, from_rows, share

TITLE = "The pool limit"
SECTION = "1.1"
CLAIM = ("Thread pools and connection pools have a limit on connections: they relieve the pressure "
         "only up to their size.")
SCALES = {"tiny": {"patience": 0.5}, "quick": {"patience": 1.0}, "full": {"patience": 3.0}}
POOL = 4
RULE = Rule((
    Compare("threadpool: 5th client's wait", "more", "threaded: 5th client's wait", margin=9, unit=" ms"),
    Compare("threadpool: runs where the 5th was answered once one left", "at_least", 100, unit=" %"),
), words=f"with {POOL} idle clients holding threadpool --threads {POOL}, a 5th client waits at least 10× longer "
         "than on threaded, and is answered once one of the 4 leaves")


def measure(ctx, record) -> None:
    """Each model's server, `ctx.repeats` rounds: 4 holders, a 5th asks, one holder leaves. Between
    rounds the 5th leaves and a new holder takes its place."""
    patience = ctx.params(SCALES)["patience"]
    names = ctx.models(record, ["threadpool", "threaded"])
    for model in ctx.each(TITLE, names):
        with ctx.server(model, "--threads", str(POOL)) as server, clients.Crowd(server.address, POOL) as holders:
            for run in range(ctx.repeats):
                held = holders.ping_all(5.0)
                with clients.connect(server.address) as fifth:
                    asked = time.monotonic()
                    waited = clients.ask(fifth, b"fifth", patience)
                    holders.socks.pop().close()
                    left = time.monotonic()
                    late = clients.wait_reply(fifth, b"fifth", 10.0, left) if waited is None else None
                record.rows.append({
                    "model": model, "run": run, "pool_threads": POOL if model == "threadpool" else None,
                    "idle_clients": POOL, "idle_clients_answered": held,
                    "fifth_answered_while_pool_full": waited is not None,
                    "fifth_wait_ms": round(1000 * (waited if waited is not None else left - asked + (late or float("nan"))), 2),
                    "fifth_reply_after_one_left_ms": None if late is None else round(1000 * late, 2),
                    "fifth_answered_after_one_left": waited is None and late is not None,
                    "patience_s": patience,
                })
                holders.socks.append(clients.connect(server.address))  # the pool is full again


def judge(record):
    return RULE.decide({
        "threadpool: 5th client's wait": from_rows(record.rows, "fifth_wait_ms", model="threadpool"),
        "threaded: 5th client's wait": from_rows(record.rows, "fifth_wait_ms", model="threaded"),
        "threadpool: runs where the 5th was answered once one left": share(
            record.rows_for(model="threadpool"), "fifth_answered_after_one_left"),
    })


def plots(record):
    rows = medians(record.rows, "model")
    return [plotting.bars(f"Fifth client: time to its reply while {POOL} idle clients are connected",
                          [row["model"] for row in rows], [row["fifth_wait_ms"] for row in rows],
                          "milliseconds (log)", log=True, suffix=" ms")]
