"""From a server's system calls to Stevens' two phases: waiting for the data, copying it.

Of everything strace saw, the calls of the scenario's connection are kept: those that name its
socket (`-yy` writes it as `...->127.0.0.1:CLIENT_PORT]`), the waits that watch many sockets at
once (select, poll, epoll_wait, rt_sigtimedwait, io_uring_enter) and the listener's accepts, in
the time from the client's connect to the server's close. Then each one is given a phase:

- copy: the call that moved the request's bytes into the process: the first recv/read on the
  connection to return bytes once the client had started sending. io_uring has no such call: the
  kernel copied the bytes into the ring's buffer by itself, and the copy phase is the
  io_uring_enter that brought the completion back.
- wait: after the connection was accepted and before that copy, every call that waited for the
  data: the multiplexers' waits, rt_sigtimedwait, io_uring_enter, and recvs that found nothing
  (EAGAIN). A blocking recv both waits and copies: it is the copy, and `waited_us` says how long
  of it was waiting.
- other: the rest (accept, the reply's send, epoll_ctl, close...).
"""

from __future__ import annotations

import collections
import dataclasses
import re

from iomodels.lab.measuring import fmt
from iomodels.trace.scenario import ClientTimes
from iomodels.trace.strace import Syscall

WAITS = {"select", "_newselect", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2",
         "rt_sigtimedwait", "io_uring_enter"}
RECVS = {"recvfrom", "recv", "read", "recvmsg", "readv", "recvmmsg"}
ACCEPTS = {"accept", "accept4"}
SPAWNS = {"clone", "clone3", "fork", "vfork"}
# How long after the client's close the server's last calls (EOF, close) still belong to the scene.
TAIL_S = 0.2


@dataclasses.dataclass
class Trace:
    model: str
    client: ClientTimes
    events: list[dict]
    lanes: dict[int, str]     # lane id -> "main", "thread", "process"
    summary: dict

    def to_dict(self) -> dict:
        return {"model": self.model, "client": self.client.to_dict(), "lanes": self.lanes,
                "summary": self.summary, "events": self.events}


def lane_kinds(calls: list[Syscall]) -> dict[int, str]:
    """The server's first lane is "main"; each clone names its child a thread or a process."""
    kinds = {calls[0].lane: "main"} if calls else {}
    for call in calls:
        if call.call in SPAWNS and call.value and call.value > 0:
            kinds[call.value] = "thread" if "CLONE_THREAD" in call.args else "process"
    return kinds


def classify(model: str, calls: list[Syscall], client: ClientTimes) -> Trace:
    tag = f"->127.0.0.1:{client.client_port}]"

    def ours(call: Syscall) -> bool:
        return tag in call.args or tag in call.returned

    closes = [c for c in calls if c.call == "close" and ours(c) and c.start >= client.connect_start]
    window_end = max(client.closed, closes[0].end if closes else client.closed + TAIL_S)
    kept = [c for c in calls if c.end >= client.connect_start and c.start <= window_end
            and (ours(c) or c.call in WAITS or c.call in ACCEPTS or c.call in SPAWNS)]
    # When the server took the connection: its accept, or (io_uring accepts in the ring) its first
    # call on the new socket.
    accepts = [c for c in kept if c.call in ACCEPTS and tag in c.returned]
    first_use = next((c.start for c in kept if ours(c)), client.connected)
    accepted = accepts[0].end if accepts else max(client.connected, first_use)
    copy = next((c for c in kept if c.call in RECVS and ours(c) and (c.value or 0) > 0
                 and c.end >= client.send_start), None)
    kernel_copied = copy is None
    if copy is None:  # completion-based: the kernel copied; the copy phase is the call that reaped it
        copy = next((c for c in kept if _sleeps(c) and c.call == "io_uring_enter" and c.end >= client.send_start),
                    None)
    # The model's own wait is the last sleeping call before the copy (a library's other rings, such
    # as libuv batching epoll_ctl through io_uring, are not waits for this request's data).
    sleepers = [c for c in kept if _sleeps(c) and c is not copy and c.start >= accepted
                and (copy is None or c.end <= copy.start + 1e-6)]
    primitive = sleepers[-1].call if sleepers else None
    waits = [c for c in kept if c is not copy and c.start >= accepted and (copy is None or c.start < copy.start)
             and ((_sleeps(c) and c.call == primitive) or (c.call in RECVS and ours(c) and c.result == "EAGAIN"))]
    wait_ids = {id(c) for c in waits}
    t0 = client.connect_start
    events = []
    for c in kept:
        phase = "copy" if c is copy else "wait" if id(c) in wait_ids else "other"
        event = {"lane": c.lane, "call": c.call, "start_us": round((c.start - t0) * 1e6, 1),
                 "duration_us": round(c.duration * 1e6, 1), "result": c.result, "phase": phase,
                 "args": c.args[:120]}
        if c.call in WAITS and c.call != "io_uring_enter":
            event["timeout_ms"] = timeout_ms(c.call, c.args)
        if phase == "copy":
            event["waited_us"] = round(max(0.0, client.send_start - c.start) * 1e6, 1) if not waits else 0.0
            if kernel_copied:
                event["note"] = "no recv of its own: the kernel had copied the bytes into the ring's buffer"
        events.append(event)
    lanes = lane_kinds(calls)
    shown = {event["lane"]: lanes.get(event["lane"], "thread") for event in events}
    summary = summarise(model, client, waits, copy, kernel_copied, accepted)
    return Trace(model, client, events, dict(sorted(shown.items())), summary)


TIMESPEC = re.compile(r"\{tv_sec=(\d+), tv_(n|u)sec=(\d+)\}")
NESTED = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}")
# Where each wait's timeout sits among its arguments (poll and epoll: milliseconds, -1 = none).
TIMEOUT_ARG = {"poll": 2, "epoll_wait": 3, "epoll_pwait": 3}


def timeout_ms(call: str, args: str) -> float | None:
    """The timeout a wait was given, in ms; None when it may wait for ever."""
    if call in TIMEOUT_ARG:
        flat = args
        while NESTED.search(flat):  # drop the nested lists and structures, whose commas would mislead
            flat = NESTED.sub("_", flat)
        parts = [part.strip() for part in flat.split(",")]
        index = TIMEOUT_ARG[call]
        if index < len(parts) and parts[index].lstrip("-").isdigit():
            value = int(parts[index])
            return None if value < 0 else float(value)
        return None
    match = TIMESPEC.search(args)  # select, pselect6, ppoll, rt_sigtimedwait: a timeval/timespec or NULL
    if not match:
        return None
    fraction = int(match.group(3)) / (1e6 if match.group(2) == "n" else 1e3)
    return int(match.group(1)) * 1000 + fraction


def _sleeps(call: Syscall) -> bool:
    """Can this call put the process to sleep? io_uring_enter only when it asks for completions."""
    if call.call != "io_uring_enter":
        return call.call in WAITS
    parts = [part.strip() for part in call.args.split(",")]
    return "GETEVENTS" in call.args or (len(parts) > 2 and parts[2].isdigit() and int(parts[2]) > 0)


def _empty(call: Syscall) -> bool:
    """A wait or recv that came back with nothing: EAGAIN/EINTR, or a multiplexer's timeout (0)."""
    if call.result in ("EAGAIN", "EINTR", "ETIMEDOUT"):
        return True
    return call.call in WAITS and call.call not in ("io_uring_enter", "rt_sigtimedwait") and call.value == 0


def summarise(model: str, client: ClientTimes, waits: list[Syscall], copy: Syscall | None, kernel_copied: bool,
              accepted: float) -> dict:
    names = collections.Counter(c.call for c in waits if _sleeps(c)) or collections.Counter(c.call for c in waits)
    # With no other wait before it, the copy call did the waiting itself (a blocking recv; the
    # io_uring_enter that slept until the completion came).
    slept_in_copy = copy is not None and not any(_sleeps(c) for c in waits) and copy.start < client.send_start
    copy_waited = client.send_start - copy.start if slept_in_copy and (not waits or kernel_copied) else 0.0
    waited = sum(c.duration for c in waits if _sleeps(c)) + copy_waited
    # Of the silence (accept -> request), the time spent asleep; a wait that overran the request
    # (the process woke late: a busy CPU) counts only up to it.
    asleep = sum(max(0.0, min(c.end, client.send_start) - max(c.start, accepted)) for c in waits if _sleeps(c))
    asleep += copy_waited
    slept = sum(1 for c in waits if _sleeps(c)) + (1 if copy_waited > 0 else 0)
    silence = max(client.send_start - accepted, 1e-9)
    began = min([c.start for c in waits] + ([copy.start] if copy else [client.send_start]))
    summary = {
        "model": model, "delay_ms": round(client.delay_s * 1000, 1),
        "silence_ms": round(silence * 1000, 1),  # accepted -> the client starts sending: what there was to wait
        "ready_ms": round((client.send_start - began) * 1000, 1),  # how long before the request it began to wait
        "waited_in": ", ".join(f"{name}()" for name in names) or (f"{copy.call}()" if copy_waited else ""),
        "calls_while_waiting": len(waits) + (1 if copy_waited else 0),
        "found_nothing": sum(1 for c in waits if _empty(c)),
        "copy_call": f"{copy.call}()" if copy else "",
        "kernel_copied": kernel_copied,
        "copy_bytes": copy.value if copy and not kernel_copied else len(client.request),
        "copy_us": round(copy.duration * 1e6, 1) if copy else None,
        "returned_after_send_us": round((copy.end - client.send_start) * 1e6, 1) if copy else None,
        "wakeups": slept,
        "waited_ms": round(waited * 1000, 1),
        "asleep_ms": round(min(asleep, silence) * 1000, 1),
        "waited_share": round(min(asleep / silence, 1.0), 3),
    }
    summary["sentence"] = sentence(summary, copy_waited > 0)
    return summary


def sentence(s: dict, same_call: bool) -> str:
    """One sentence, generated from the trace, of who waited where and who copied."""
    n = s["calls_while_waiting"]
    waited = f"{fmt(s['waited_ms'])} ms"
    if not s["copy_call"]:
        return "the trace holds no call that took the request in"
    copy = s["copy_call"]
    if same_call and s["kernel_copied"]:
        return (f"waited {waited} inside {copy}, which came back with the completion and made no recv of "
                f"its own: the kernel had already copied the {s['copy_bytes']} bytes into the ring's buffer")
    if same_call:
        return (f"waited {waited} inside {copy}, which returned the {s['copy_bytes']} bytes "
                f"{duration(s['returned_after_send_us'])} after they were sent: wait and copy in one call")
    if s["kernel_copied"]:
        return (f"waited {waited} inside {s['waited_in'] or copy} ({_calls(n, s['found_nothing'])}) and made no "
                f"recv of its own: when {copy} returned, the kernel had already copied the "
                f"{s['copy_bytes']} bytes into the ring's buffer")
    if s["wakeups"] == 0:
        every = "every one" if s["found_nothing"] == n else f"{fmt(s['found_nothing'])} of them"
        return (f"never slept: {fmt(n)} {s['waited_in'] or 'calls'} calls in {fmt(s['silence_ms'])} ms, {every} "
                f"EAGAIN; then {copy} copied the {s['copy_bytes']} bytes in {fmt(s['copy_us'])} µs")
    return (f"waited {waited} inside {s['waited_in']} ({_calls(n, s['found_nothing'])}); then {copy} copied "
            f"the {s['copy_bytes']} bytes in {fmt(s['copy_us'])} µs, {duration(s['returned_after_send_us'])} "
            "after the request was sent")


def duration(us: float) -> str:
    """12.0 µs / 1.30 ms: microseconds for people."""
    return f"{fmt(us / 1000)} ms" if us >= 1000 else f"{fmt(us)} µs"


def _calls(count: int, empty: int) -> str:
    made = f"{fmt(count)} call{'s' if count != 1 else ''}"
    return f"{made}, {fmt(empty)} found nothing" if empty else f"{made}, none came back empty"


def _kind(event: dict) -> tuple:
    """Calls that failed the same way (EAGAIN) run together whatever their names: a sweep of
    accept + recv that both found nothing is one run."""
    if event["result"].startswith("E") and event["phase"] != "copy":
        return ("failed", event["result"])
    return (event["call"], event["result"], event["phase"])


# Fewer identical calls than this stay apart: a handful of select timeouts is the very picture of
# asking at intervals; thousands of EAGAINs would be a smear of bars too close to tell apart.
SHORTEST_RUN = {"failed": 3, "same": 20}


def runs(events: list[dict]) -> list[dict]:
    """Consecutive calls of one lane of the same kind, enough of them (SHORTEST_RUN), become one: start
    of the first, `duration_us` to the end of the last, `busy_us` the time spent inside them,
    `count`, and `calls` by name ("accept4+recvfrom" for a sweep); a wait among them makes it a wait."""
    out: list[dict] = []
    group: list[dict] = []

    def flush():
        if group and len(group) >= SHORTEST_RUN["failed" if _kind(group[0])[0] == "failed" else "same"]:
            first, last = group[0], group[-1]
            by_name = collections.Counter(e["call"] for e in group)
            phases = {e["phase"] for e in group}
            out.append({**first, "call": "+".join(by_name), "calls": dict(by_name), "count": len(group),
                        "phase": "wait" if "wait" in phases else first["phase"],
                        "busy_us": round(sum(e["duration_us"] for e in group), 1),
                        "duration_us": round(last["start_us"] + last["duration_us"] - first["start_us"], 1)})
        else:
            out.extend({**e, "count": 1, "busy_us": e["duration_us"]} for e in group)
        group.clear()

    # Runs are per lane: another thread's calls interleave without breaking them.
    for lane in dict.fromkeys(e["lane"] for e in events):
        for event in (e for e in events if e["lane"] == lane):
            if group and _kind(event) != _kind(group[-1]):
                flush()
            group.append(event)
        flush()
    return sorted(out, key=lambda e: e["start_us"])
