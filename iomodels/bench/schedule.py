"""Open loop: requests sent on a fixed timetable, whatever the replies do (see connection.py on how
each is timed from its intended instant)."""

from __future__ import annotations

from array import array
from time import perf_counter_ns

from iomodels.bench.timer import WakeUp

MAX_BURST = 20_000  # messages sent per timer tick at most, so the loop still reads


class Schedule:
    """Open loop: call `send(intended_ns)` `rate` times a second from `t0_ns` until `end_ns`.

    Between bursts it sleeps on a `WakeUp` (a timerfd, so microseconds rather than the loop's
    milliseconds). A busy client can still fall behind: each message is timed from its intended
    time regardless, and the lag of every burst (how late its first message left) is kept so the
    report can say how punctual the sender was.
    """

    def __init__(self, loop, rate: float, t0_ns: int, end_ns: int, send):
        self.interval = 1e9 / rate
        self.t0 = t0_ns
        self.end = end_ns
        self.send = send
        self.sent = 0
        self.lag = array("q")
        self.wake = WakeUp(loop)

    def intended(self, n: int) -> int:
        return self.t0 + int(n * self.interval)

    def tick(self) -> None:
        now = perf_counter_ns()
        if now >= self.end:
            self.wake.close()
            return
        due = min(int((now - self.t0) / self.interval) + 1 - self.sent, MAX_BURST)
        if due > 0:
            self.lag.append(now - self.intended(self.sent))
            for n in range(self.sent, self.sent + due):
                self.send(self.intended(n))
            self.sent += due
        self.wake.at(min(self.intended(self.sent), self.end), self.tick)


def round_robin(connections: list):
    """Open loop over persistent connections: each message to the next live connection."""
    turn = 0

    def send(intended_ns: int) -> None:
        nonlocal turn
        for _ in range(len(connections)):
            connection = connections[turn]
            turn = (turn + 1) % len(connections)
            if connection.alive and not connection.closing:
                connection.send(intended_ns)
                return

    return send
