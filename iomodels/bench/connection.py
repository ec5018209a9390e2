"""One loaded connection: send, verify every reply byte for byte and in order, time it.

Closed loop: a reply completes a request and triggers the next one, so at most `pipeline` messages
are in flight and the server sets the pace. Open loop: a `Schedule` sends on a fixed timetable
whatever the replies do, and each request is timed from its *intended* send time, so a server that
stalls shows in the percentiles instead of silently slowing the sender (coordinated omission; wrk2
corrects it the same way).

The hot path is `data_received` when the bytes that arrived are exactly the reply at the head of
the line, which is nearly always the case in ping-pong: one `==` against a prebuilt `bytes`, one
array append, one write(2) of a prebuilt message straight to the socket (see `_write`). Anything
else (a reply split over reads, several replies in one read, garbage) takes `_slow`, which walks
the bytes against the queue of expected replies.
"""

from __future__ import annotations

import asyncio
from array import array
from collections import deque
from os import write as os_write
from time import perf_counter_ns

from iomodels.bench.histogram import LatencyHistogram
from iomodels.bench.idle import ConnectErrors
from iomodels.bench.timer import WakeUp

MAX_BURST = 20_000  # open loop: messages sent per timer tick at most, so the loop still reads


class Tally:
    """What one worker counts. `finishing` is set at the end: failures after it are not errors."""

    def __init__(self):
        self.latencies = array("q")  # ns, since the last flush
        self.histogram = LatencyHistogram()
        self.warmup_requests = 0
        self.mismatches = 0
        self.protocol_errors = 0
        self.lost = 0
        self.idle_lost = 0
        self.lost_reasons: dict[str, int] = {}
        self.connect = ConnectErrors()
        self.finishing = False

    def flush(self, measuring: bool) -> None:
        if measuring:
            self.histogram.record_batch(self.latencies)
        else:
            self.warmup_requests += len(self.latencies)
        del self.latencies[:]

    @property
    def completed(self) -> int:
        return self.warmup_requests + self.histogram.count + len(self.latencies)

    def connection_lost(self, protocol, exc, idle: bool = False) -> None:
        if self.finishing or protocol.closing:
            return
        reason = "reset by the server" if exc is not None else "closed by the server"
        reason = f"{'idle ' if idle else ''}connection {reason}"
        self.lost_reasons[reason] = self.lost_reasons.get(reason, 0) + 1
        if idle:
            self.idle_lost += 1
        else:
            self.lost += 1


class Connection(asyncio.Protocol):
    __slots__ = ("tally", "record", "next_message", "refill", "pingpong", "transport", "fd", "direct", "expect",
                 "partial", "head_t", "got", "bad", "queue", "alive", "closing")

    def __init__(self, tally: Tally, script, refill: bool):
        self.tally = tally
        self.record = tally.latencies.append
        self.next_message = script  # () -> (message, expected reply)
        self.refill = refill  # closed loop: each completed reply sends the next message
        self.pingpong = False  # closed loop, one message in flight: the fast path does it all
        self.transport = None
        self.fd = -1
        self.direct = True  # writes go straight to the socket (see _write)
        # The reply at the head of the line is timed from `head_t`; the ones after it wait in `queue`
        # as (reply, start ns). While none of the head has arrived it is `expect`, which the fast path
        # compares with; once part of it has, it is `partial` (and `expect` is None, so a partial
        # state is never mistaken for a whole reply), `got` bytes of it arrived, `bad` if any differed.
        self.expect = self.partial = None
        self.head_t = self.got = 0
        self.bad = False
        self.queue = deque()
        self.alive = self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.fd = transport.get_extra_info("socket").fileno()
        self.alive = True

    def connection_lost(self, exc):
        self.alive = False
        self.tally.connection_lost(self, exc)

    def eof_received(self):
        return False  # close our side too; connection_lost counts it

    def start(self, depth: int) -> None:
        """Closed loop: put `depth` messages in flight at once."""
        self.pingpong = self.refill and depth == 1
        if self.closing:  # aborted already: the server sent bytes before any request
            return
        self._refill(depth, perf_counter_ns())

    def send(self, intended_ns: int) -> None:
        """Open loop: send the next message now, timed from when it should have been sent."""
        if self.closing:  # aborted (a protocol error); connection_lost has not run yet
            return
        message, expect = self.next_message()
        self._write(message)
        self._push(expect, intended_ns)

    def data_received(self, data):
        t = perf_counter_ns()
        if data == self.expect:
            self.record(t - self.head_t)
            if self.pingpong:
                message, self.expect = self.next_message()
                self.head_t = t
                self._write(message)
            else:
                self._pop()
                if self.refill:
                    self._refill(1, t)
        else:
            self._slow(data, t)

    def _slow(self, data, t: int) -> None:
        size = len(data)
        view = memoryview(data)
        position = refills = 0
        while position < size:
            head = self.expect if self.partial is None else self.partial
            if head is None:  # more bytes than were sent: no echo server does that
                self.tally.protocol_errors += 1
                self.closing = True
                self.transport.abort()
                return
            take = min(len(head) - self.got, size - position)
            if not head.startswith(view[position:position + take], self.got):
                self.bad = True
            position += take
            self.got += take
            if self.got == len(head):
                self.record(t - self.head_t)
                if self.bad:
                    self.tally.mismatches += 1
                self._pop()
                refills += self.refill
            else:
                self.partial, self.expect = head, None
        if refills:
            self._refill(refills, t)

    def _push(self, expect: bytes, t: int) -> None:
        if self.expect is None and self.partial is None:
            self.expect = expect
            self.head_t = t
        else:
            self.queue.append((expect, t))

    def _pop(self) -> None:
        self.got = 0
        self.bad = False
        self.partial = None
        if self.queue:
            self.expect, self.head_t = self.queue.popleft()
        else:
            self.expect = None

    def _refill(self, count: int, t: int) -> None:
        batch = []
        for _ in range(count):
            message, expect = self.next_message()
            batch.append(message)
            self._push(expect, t)
        self._write(b"".join(batch) if count > 1 else batch[0])

    def _write(self, data: bytes) -> None:
        """Send now, with one write(2), as the C generator does.

        uvloop's transport.write() only queues the bytes: it sends them at the end of the loop
        iteration, after every reply read in that iteration was handled. The server then gets
        requests in bursts and sits idle in between, and client and server end up taking turns
        instead of working in parallel (measured: several % fewer requests/s, more CPU per
        request). What the socket does not take at once goes to the transport, and later writes
        follow it there until it has drained, so the byte order on the wire never changes.
        """
        if not self.direct:
            if self.transport.get_write_buffer_size():
                self.transport.write(data)
                return
            self.direct = True
        try:
            sent = os_write(self.fd, data)
        except OSError:  # full (EAGAIN), or failing: the transport buffers it, or meets the error
            sent = 0
        if sent < len(data):
            self.direct = False
            self.transport.write(memoryview(data)[sent:])


class CountingConnection(Connection):
    """For sizes drawn from a range, where bytes cannot be derived from the number of requests."""

    __slots__ = ("nbytes",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nbytes = 0

    def data_received(self, data):
        self.nbytes += len(data)
        Connection.data_received(self, data)


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


def round_robin(connections: list[Connection]):
    """Open loop over persistent connections: each message to the next live connection."""
    turn = 0

    def send(intended_ns: int) -> None:
        nonlocal turn
        for _ in range(len(connections)):
            connection = connections[turn]
            turn = (turn + 1) % len(connections)
            if connection.alive:
                connection.send(intended_ns)
                return

    return send
