"""Each model's trace has the shape the tutorial draws: read from `iomodels trace MODEL --json`.

One scenario per model, run once (module-scoped): the client connects, stays silent, sends one
request. Nothing here asserts a duration; only "the wait began before the request and lasted until it"
(an order of timestamps on one clock; `iomodels trace` retakes a scene where the server began to
wait less than half the delay before the request, and warns when it never could) and counts of
calls. Skipped where strace is missing or cannot trace.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from iomodels.serving import models
from iomodels.trace.phases import RECVS
from iomodels.trace.scenario import REQUEST
from iomodels.trace.strace import TraceError, check_tracer

DELAY = 0.3
POLL_INTERVAL = 0.02


def _tracer_problem() -> str | None:
    try:
        check_tracer()
    except TraceError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(bool(_tracer_problem()), reason=_tracer_problem() or "")


@functools.cache
def trace(model: str, *flags: str, delay: float = DELAY) -> tuple[list[dict], dict]:
    """(the server's events, the client's moments by name)."""
    reason = models.unavailable_reason(model)
    if reason:
        pytest.skip(f"{model} cannot run here: {reason}")
    out = subprocess.run([sys.executable, "-m", "iomodels", "trace", model, "--json", "--delay", str(delay), *flags],
                         capture_output=True, text=True, timeout=120)
    # A starved server that began to wait only after the request, in every try: no picture to check.
    if "the machine is too busy" in out.stderr:
        pytest.skip(out.stderr.strip())
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    for line in lines:
        assert {"lane", "call", "start_us", "duration_us", "result", "phase"} <= set(line)
        assert line["phase"] in ("wait", "copy", "other")
    client = {line["call"]: line for line in lines if line["lane"] == "client"}
    return [line for line in lines if line["lane"] != "client"], client


def end(event: dict) -> float:
    return event["start_us"] + event["duration_us"]


def only(events: list[dict], phase: str) -> dict:
    found = [e for e in events if e["phase"] == phase]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("model", ["blocking", "threaded"])
def test_the_blocking_family_waits_inside_a_recv_that_returns_the_bytes(model):
    events, client = trace(model)
    sent = client["send request"]["start_us"]
    copy = only(events, "copy")
    assert copy["call"] in RECVS and copy["result"] == str(len(REQUEST))
    # It was asleep in that one call through the silence: it began before the request, ended after it.
    assert copy["start_us"] < sent <= end(copy)
    assert copy["duration_us"] >= sent - copy["start_us"] and copy["waited_us"] > 0
    assert not [e for e in events if e["phase"] == "wait"]
    if model == "threaded":
        assert copy["lane"] != events[0]["lane"]  # in the connection's own thread, not the accepting one


def test_nonblocking_asks_again_and_again_and_hears_eagain():
    events, client = trace("nonblocking", delay=0.5)  # long enough for 100 traced sweeps on a busy machine
    sent = client["send request"]["start_us"]
    eagain = [e for e in events if e["call"] in RECVS and e["result"] == "EAGAIN" and end(e) <= sent]
    assert len(eagain) >= 100
    assert all(e["phase"] == "wait" for e in eagain)
    assert only(events, "copy")["result"] == str(len(REQUEST))


def test_epoll_waits_in_epoll_wait_then_its_recv_finds_the_bytes_there():
    events, client = trace("epoll")
    sent = client["send request"]["start_us"]
    waits = [e for e in events if e["phase"] == "wait"]
    assert waits and {e["call"] for e in waits} == {"epoll_wait"}
    woke = waits[-1]
    assert woke["start_us"] < sent <= end(woke) and woke["result"] == "1"
    copy = only(events, "copy")
    # The recv starts once epoll_wait has returned, when the bytes are there: it does not wait.
    assert copy["call"] in RECVS and copy["start_us"] >= end(woke) and copy["result"] == str(len(REQUEST))


def test_io_uring_waits_in_io_uring_enter_and_makes_no_recv_of_its_own():
    events, client = trace("io_uring")
    sent = client["send request"]["start_us"]
    copy = only(events, "copy")
    assert copy["call"] == "io_uring_enter" and copy["start_us"] < sent <= end(copy)
    assert "kernel" in copy["note"]
    assert not [e for e in events if e["call"] in RECVS]


def test_select_waits_in_select_calls_of_at_most_its_poll_interval():
    events, client = trace("select", "--poll-interval", str(POLL_INTERVAL))
    waits = [e for e in events if e["phase"] == "wait"]
    assert len(waits) >= 2  # it asked more than once during the silence
    assert {e["call"] for e in waits} <= {"select", "pselect6", "_newselect"}
    # Each one was given the interval as its timeout (its -T duration also holds the scheduler's lateness).
    assert all(e["timeout_ms"] is not None and e["timeout_ms"] <= POLL_INTERVAL * 1000 for e in waits)
    assert any(e["result"] == "0" for e in waits)  # and some came back with nothing
    assert only(events, "copy")["call"] in RECVS


def test_sigio_waits_in_rt_sigtimedwait():
    events, client = trace("sigio")
    sent = client["send request"]["start_us"]
    sleeps = [e for e in events if e["phase"] == "wait" and e["call"] == "rt_sigtimedwait"]
    assert sleeps and end(sleeps[-1]) >= sent
    assert only(events, "copy")["call"] in RECVS
