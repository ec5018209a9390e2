"""A first client connects, is answered once, and then says nothing. A second client connects and
asks. The blocking server is sitting in `recv()` on the first client's socket, so the second one's
request waits in the kernel, unanswered, until the first client leaves; every model that serves
connections concurrently (a thread or process each, a pool, or one thread waiting on many sockets)
answers it at once. The plot shows how long the second client waited for its reply; the
blocking server's bar ends only when the lab closed the first client."""

from __future__ import annotations

import time

from iomodels.lab import clients, plotting
from iomodels.lab.measuring import fmt
from iomodels.lab.runner import FAILS, HOLDS, UNKNOWN

TITLE = "Deaf server"
SECTION = "1.1"
CLAIM = ("Blocking I/O blocks in both phases, so while it serves one user the server cannot handle "
         "another user's request; processes or threads let it serve several at once.")
SCALES = {"tiny": {"patience": 0.5}, "quick": {"patience": 1.5}, "full": {"patience": 3.0}}


def measure(ctx, record) -> None:
    patience = ctx.params(SCALES)["patience"]
    names = ctx.models(record)
    for model in ctx.each(TITLE, names):
        with ctx.server(model) as server, clients.connect(server.address) as first:
            first_answered = clients.ask(first, b"first", 5.0) is not None
            with clients.connect(server.address) as second:
                asked = time.monotonic()
                waited = clients.ask(second, b"second", patience)
                first.close()
                late = clients.wait_reply(second, b"second", 10.0, asked) if waited is None else None
        record.rows.append({
            "model": model, "first_answered": first_answered,
            "second_answered_while_first_connected": waited is not None,
            "second_reply_ms": round(1000 * (waited if waited is not None else late or float("nan")), 2),
            "patience_s": patience,
        })


def judge(record):
    rows = {row["model"]: row for row in record.rows}
    if "blocking" not in rows or len(rows) < 2:
        return UNKNOWN, "needs the blocking model and at least one other"
    deaf = not rows.pop("blocking")["second_answered_while_first_connected"]
    blocking = record.rows_for(model="blocking")[0]
    answered = [name for name, row in rows.items() if row["second_answered_while_first_connected"]]
    slowest = max((rows[name]["second_reply_ms"] for name in answered), default=float("nan"))
    deciding = (f"blocking: 2nd client {'unanswered' if deaf else 'answered'} for "
                f"{fmt(blocking['patience_s'])} s while the 1st sat idle (reply {fmt(blocking['second_reply_ms'])} ms "
                f"after asking, i.e. once the 1st left); {len(answered)}/{len(rows)} other models answered it, "
                f"in at most {fmt(slowest)} ms")
    return (HOLDS if deaf and len(answered) == len(rows) else FAILS), deciding


def plots(record):
    rows = record.rows
    return [plotting.bars("Second client: time to its reply while the first one sits idle",
                          [row["model"] for row in rows], [row["second_reply_ms"] for row in rows],
                          "milliseconds (log)", log=True, suffix=" ms")]
