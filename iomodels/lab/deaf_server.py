"""A first client connects, is answered once, and then says nothing. A second client connects and
asks. The blocking server is sitting in `recv()` on the first client's socket, so the second one's
request waits in the kernel, unanswered, until the first client leaves; every model that serves
connections concurrently (a thread or process each, a pool, or one thread waiting on many sockets)
answers it at once. The plot shows how long the second client waited for its reply; the
blocking server's bar ends only when the lab closed the first client."""

from __future__ import annotations

import time

from iomodels.lab import clients, plotting
from iomodels.lab.measuring import medians
from iomodels.lab.verdicts import Compare, Rule, samples

TITLE = "Deaf server"
SECTION = "1.1"
CLAIM = ("Blocking I/O blocks in both phases, so while it serves one user the server cannot handle "
         "another user's request; processes or threads let it serve several at once.")
SCALES = {"tiny": {"patience": 0.5}, "quick": {"patience": 1.0}, "full": {"patience": 3.0}}
RULE = Rule((
    Compare("blocking: 2nd client's wait", "more", "slowest other model's 2nd-client wait", margin=9, unit=" ms"),
    Compare("other models that left the 2nd client unanswered", "less", 1),
), words="blocking leaves the 2nd client waiting while the 1st sits idle, at least 10× longer than the slowest "
         "other model takes to answer it; every other model answers it")


def measure(ctx, record) -> None:
    """Each model's server is asked `ctx.repeats` times: a first client, then a second one."""
    patience = ctx.params(SCALES)["patience"]
    names = ctx.models(record)
    ctx.begin(TITLE, len(names))
    for model in names:
        ctx.step(f"{TITLE}: {model}")
        with ctx.server(model) as server:
            for run in range(ctx.repeats):
                record.rows.append({"model": model, "run": run, **_once(server, patience)})


def _once(server, patience: float) -> dict:
    with clients.connect(server.address) as first:
        first_answered = clients.ask(first, b"first", 5.0) is not None
        with clients.connect(server.address) as second:
            asked = time.monotonic()
            waited = clients.ask(second, b"second", patience)
            first.close()
            late = clients.wait_reply(second, b"second", 10.0, asked) if waited is None else None
    return {"first_answered": first_answered, "second_answered_while_first_connected": waited is not None,
            "second_reply_ms": round(1000 * (waited if waited is not None else late or float("nan")), 2),
            "patience_s": patience}


def judge(record):
    runs = sorted({row["run"] for row in record.rows})
    others = [row for row in record.rows if row["model"] != "blocking"]
    figures = {
        "blocking: 2nd client's wait": samples(row["second_reply_ms"] for row in record.rows_for(model="blocking")),
        "slowest other model's 2nd-client wait": samples(
            max((row["second_reply_ms"] for row in others if row["run"] == run), default=None) for run in runs),
        "other models that left the 2nd client unanswered": samples(
            sum(not row["second_answered_while_first_connected"] for row in others if row["run"] == run)
            for run in runs) if others else None,
    }
    return RULE.decide(figures)


def plots(record):
    rows = medians(record.rows, "model")
    return [plotting.bars("Second client: time to its reply while the first one sits idle",
                          [row["model"] for row in rows], [row["second_reply_ms"] for row in rows],
                          "milliseconds (log)", log=True, suffix=" ms")]
