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
from iomodels.lab.measuring import fmt
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "The pool limit"
SECTION = "1.1"
CLAIM = ("Thread pools and connection pools have a limit on connections: they relieve the pressure "
         "only up to their size.")
SCALES = {"tiny": {"patience": 0.5}, "quick": {"patience": 1.5}, "full": {"patience": 3.0}}
POOL = 4


def measure(ctx, record) -> None:
    patience = ctx.params(SCALES)["patience"]
    names = ctx.models(record, ["threadpool", "threaded"])
    for model in ctx.each(TITLE, names):
        with ctx.server(model, "--threads", str(POOL)) as server, clients.Crowd(server.address, POOL) as holders:
            held = holders.ping_all(5.0)
            with clients.connect(server.address) as fifth:
                asked = time.monotonic()
                waited = clients.ask(fifth, b"fifth", patience)
                holders.socks.pop().close()
                left = time.monotonic()
                late = clients.wait_reply(fifth, b"fifth", 10.0, left) if waited is None else None
        record.rows.append({
            "model": model, "pool_threads": POOL if model == "threadpool" else None, "idle_clients": POOL,
            "idle_clients_answered": held, "fifth_answered_while_pool_full": waited is not None,
            "fifth_wait_ms": round(1000 * (waited if waited is not None else left - asked + (late or float("nan"))), 2),
            "fifth_reply_after_one_left_ms": None if late is None else round(1000 * late, 2),
            "patience_s": patience,
        })


def judge(record):
    pool = record.rows_for(model="threadpool")
    if not pool:
        return UNKNOWN, "needs the threadpool model"
    row = pool[0]
    blocked = row["idle_clients_answered"] == POOL and not row["fifth_answered_while_pool_full"]
    freed = row["fifth_reply_after_one_left_ms"] is not None
    deciding = (f"threadpool --threads {POOL}: {row['idle_clients_answered']}/{POOL} idle clients held the pool; "
                f"the 5th got {'no reply' if blocked else 'a reply'} in {fmt(row['patience_s'])} s, then "
                + (f"its reply {fmt(row['fifth_reply_after_one_left_ms'])} ms after one client left"
                   if freed else "still none after one left"))
    for contrast in record.rows_for(model="threaded"):
        deciding += f"; threaded answered the 5th in {fmt(contrast['fifth_wait_ms'])} ms"
    return (HOLDS if blocked and freed else FAILS), deciding


def plots(record):
    rows = record.rows
    return [plotting.bars(f"Fifth client: time to its reply while {POOL} idle clients are connected",
                          [row["model"] for row in rows], [row["fifth_wait_ms"] for row in rows],
                          "milliseconds (log)", log=True, suffix=" ms")]
