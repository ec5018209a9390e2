"""One loaded connection: send, verify every reply byte for byte and in order, time it.

Closed loop: a reply completes a request and triggers the next one, so at most `pipeline` messages
are in flight and the server sets the pace. Open loop: a `Schedule` sends on a fixed timetable
whatever the replies do, and each request is timed from its *intended* send time, so a server that
stalls shows in the percentiles instead of silently slowing the sender (coordinated omission; wrk2
corrects it the same way).

What a latency is: the time from when a request was written (the write(2) that carried it; in open
loop, when it should have been) to when the receive that completed its reply returned. At depth a
refill writes several requests at once and a receive completes several replies at once: they share
those two instants, so the work per receive does not grow with the replies it holds.

The hot path works per receive, not per message. A connection's traffic is a window into its
worker's `Stream` (all messages end to end), so a receive is checked with one `==` against one
slice of the expected bytes, whatever mix of whole and partial replies it holds; the replies it
completes are counted by arithmetic on offsets; each batch of requests written together is timed
with one (latency, count) pair; the refill is one slice and one write(2) straight to the socket
(see `_write`); the receives come from the worker's `Poller`, one read(2) each. In ping-pong a
receive that is exactly the one reply in flight takes a shorter path still. Only a receive that
does not match goes message by message (`_mismatched`), to count the wrong replies and to name
the first wrong byte.
"""

from __future__ import annotations

from array import array
from collections import deque
from os import write as os_write
from time import perf_counter_ns

from iomodels.bench.histogram import LatencyHistogram
from iomodels.bench.idle import ConnectErrors
from iomodels.bench.payload import Stream
from iomodels.linger import reset_on_close

# Bytes per read(2) at most. Each read allocates a bytes object of this size before it shrinks to
# what arrived: from 128 KiB on, glibc maps and unmaps that memory on every read (measured: 15 us
# per read at 256 KiB, 2 us at 64 KiB).
MAX_READ = 64 << 10


class Tally:
    """What one worker counts. `finishing` is set at the end: failures after it are not errors.

    Latencies and wrong replies wait here until the next `flush`, which files them under the
    warm-up or the measured window together, so mismatches can never outnumber requests.
    """

    def __init__(self):
        self.latencies = array("q")  # ns, one request each, since the last flush
        self.batch_latencies = array("q")  # ns, shared by batch_counts[i] requests each
        self.batch_counts = array("q")
        self.histogram = LatencyHistogram()
        self.warmup_requests = 0
        self.new_mismatches = 0
        self.mismatches = 0
        self.warmup_mismatches = 0
        self.first_mismatch: dict | None = None
        self.protocol_errors = 0
        self.protocol_reasons: dict[str, int] = {}
        self.lost = 0
        self.idle_lost = 0
        self.lost_reasons: dict[str, int] = {}
        self.connect = ConnectErrors()
        self.finishing = False

    def flush(self, measuring: bool) -> LatencyHistogram:
        """File what was recorded since the last flush; returns it as a histogram of its own."""
        fresh = LatencyHistogram()
        fresh.record_batch(self.latencies)
        fresh.record_batch(self.batch_latencies, self.batch_counts)
        if measuring:
            self.histogram.add(fresh)
            self.mismatches += self.new_mismatches
        else:
            self.warmup_requests += fresh.count
            self.warmup_mismatches += self.new_mismatches
        self.new_mismatches = 0
        del self.latencies[:], self.batch_latencies[:], self.batch_counts[:]
        return fresh

    @property
    def completed(self) -> int:
        return self.warmup_requests + self.histogram.count + len(self.latencies) + sum(self.batch_counts)

    @property
    def errors(self) -> int:
        return self.protocol_errors + self.lost + self.idle_lost + self.connect.count

    def protocol_error(self, reason: str) -> None:
        self.protocol_errors += 1
        self.protocol_reasons[reason] = self.protocol_reasons.get(reason, 0) + 1

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


class Connection:
    """Message numbers are absolute positions in the worker's `Stream`, from `first`: `sent` were
    written, `done` replies are complete, `got` bytes of reply `done` arrived. Requests written
    together form a batch, timed from one instant: the head batch ends at message `head_end` and
    was written at `head_t`, the later ones wait in `queue` as (end, t). `expect` is the whole
    reply `done` while none of it has arrived (else None: the ping-pong fast path compares with
    it); `tainted` is a reply already known wrong whose end has not arrived yet (else -1).
    `read_size` bounds each read(2): in closed loop one byte more than can ever be owed, so that a
    small reply is read into a small bytes object, and a server that sends more than it was sent
    is still caught by the first read that holds the surplus."""

    __slots__ = ("tally", "record", "stream", "pairs", "count", "number", "first", "sent", "done", "got",
                 "expect", "head_end", "head_t", "queue", "tainted", "refill", "pingpong", "sock", "poller", "fd",
                 "pending", "read_size", "alive", "closing", "fixed", "period", "span", "expected")

    def __init__(self, tally: Tally, stream: Stream, first: int, refill: bool, number: int = 0):
        self.tally = tally
        self.record = tally.latencies.append
        self.stream = stream
        self.pairs = stream.pairs
        self.count = stream.count
        # The Stream's figures, for the inline fast path of fixed sizes (see _receive)
        self.fixed, self.period, self.expected = stream.fixed, stream.period, stream.expected
        self.span = stream.period + stream.reach  # windows starting in the table and ending by here are one slice
        self.number = number  # for the first-mismatch note
        self.first = self.sent = self.done = self.head_end = first
        self.got = self.head_t = 0
        self.expect = None
        self.queue = deque()
        self.tainted = -1
        self.refill = refill  # closed loop: each completed reply sends the next message
        self.pingpong = False  # closed loop, one message in flight: the fast path does it all
        self.sock = self.poller = None
        self.fd = -1
        self.pending = bytearray()  # what the socket did not take yet; later writes queue behind it
        self.read_size = MAX_READ
        self.alive = self.closing = False

    @property
    def direct(self) -> bool:
        """Nothing is pending: writes go straight to the socket (see _write)."""
        return not self.pending

    @property
    def nbytes(self) -> int:
        """Reply bytes received so far."""
        return self.stream.offset(self.done) + self.got - self.stream.offset(self.first)

    def attached(self, sock, poller) -> None:
        """The Poller now reads `sock` for us."""
        self.sock, self.poller, self.fd = sock, poller, sock.fileno()
        self.alive = True

    def lost(self, exc: BaseException | None) -> None:
        """The server closed (None), reset, or the socket failed: counted unless we were closing."""
        if self._release():
            self.tally.connection_lost(self, exc)

    def close(self, reset: bool = False) -> None:
        """Ours: a FIN, or with `reset` an RST (SO_LINGER 0). Not counted as lost."""
        self.closing = True
        if reset and self.alive:
            reset_on_close(self.sock)
        self._release()

    def _release(self) -> bool:
        if not self.alive:
            return False
        self.alive = False
        self.poller.forget(self.fd)
        self.sock.close()
        return True

    def start(self, depth: int) -> None:
        """Closed loop: put `depth` messages in flight at once (unless the server already hung up,
        or sent before it was asked: that was counted as a protocol error and the connection aborted)."""
        if not self.alive or self.closing:
            return
        self.pingpong = self.refill and depth == 1
        if self.refill:
            self.read_size = min(MAX_READ, depth * self.stream.longest + 1)
        self._send(depth, perf_counter_ns())

    def send(self, intended_ns: int) -> None:
        """Open loop: send the next message now, timed from when it should have been sent."""
        self._send(1, intended_ns)

    def data_received(self, data):
        t = perf_counter_ns()
        if data == self.expect:  # exactly the one whole reply at the head of the line
            self.record(t - self.head_t)
            done = self.done = self.done + 1
            if self.pingpong:
                message, self.expect = self.pairs[done % self.count]
                self.sent = self.head_end = done + 1
                self.head_t = t
                if self.pending:
                    self._write(message)
                    return
                try:  # _write's common case, inline: a Python call less per request
                    sent = os_write(self.fd, message)
                except OSError:
                    sent = 0
                if sent < len(message):
                    self._hold(message[sent:])
                return
            if self.head_end == done and self.queue:
                self.head_end, self.head_t = self.queue.popleft()
            self.expect = self.pairs[done % self.count][1] if done < self.sent else None
            if self.refill:
                self._send(1, t)
        else:
            self._receive(data, t)

    def _receive(self, data, t: int) -> None:
        """Any other receive: several replies, parts of replies, or wrong bytes. For fixed sizes the
        common case (right bytes, no more than were sent, no wrap beyond the table's reach) is
        inline arithmetic and one slice; everything else goes through the Stream's methods."""
        size = self.fixed
        if size:
            start = self.done * size + self.got
            end = start + len(data)
            at = start % self.period
            if end <= self.sent * size and at + len(data) <= self.span and data == self.expected[at:at + len(data)]:
                done = end // size
                self.got = end - done * size
                self._complete(done, t)
                return
        stream = self.stream
        start = stream.offset(self.done) + self.got
        end = start + len(data)
        limit = stream.offset(self.sent)
        if end <= limit and data == stream.window(stream.expected, start, len(data)):
            done = stream.completed(end)
        else:
            done = self._mismatched(data, start, min(end, limit))
        self.got = min(end, limit) - stream.offset(done)
        self._complete(done, t)
        if end > limit:  # more bytes than were sent: no echo server does that
            self.tally.protocol_error("the server sent more bytes than it was sent"
                                      if limit > stream.offset(self.first) else
                                      "the server sent before it was sent anything")
            self.close(reset=True)

    def _mismatched(self, data, start: int, stop: int) -> int:
        """Check [start, stop) reply by reply; count each wrong reply once, when its end has arrived;
        note the first wrong byte. Returns the number of complete replies."""
        stream, tally = self.stream, self.tally
        index, at = self.done, start
        while at < stop:
            reply_start, reply_end = stream.offset(index), stream.offset(index + 1)
            take = min(reply_end, stop) - at
            expected = stream.window(stream.expected, at, take)
            got = data[at - start:at - start + take]
            if got != expected:
                if tally.first_mismatch is None:
                    wrong = next(i for i in range(take) if got[i] != expected[i])
                    tally.first_mismatch = {"connection": self.number, "request": index - self.first + 1,
                                            "byte": at - reply_start + wrong, "expected": expected[wrong],
                                            "got": got[wrong]}
                self.tainted = index
            at += take
            if at == reply_end:
                if self.tainted == index:
                    tally.new_mismatches += 1
                    self.tainted = -1
                index += 1
        return index

    def _complete(self, done: int, t: int) -> None:
        """Replies up to `done` are complete: time them batch by batch, refill as many."""
        previous = self.done
        if done == previous:
            self.expect = None  # only part of the head reply arrived
            return
        if self.tainted >= 0 and done > self.tainted:  # its last bytes were right, its first were not
            self.tally.new_mismatches += 1
            self.tainted = -1
        self.done = done
        tally, current = self.tally, previous
        while True:
            end = self.head_end
            upto = end if end < done else done
            latency, count = t - self.head_t, upto - current
            if count == 1:
                self.record(latency)
            elif count:
                tally.batch_latencies.append(latency)
                tally.batch_counts.append(count)
            current = upto
            if end > done or not self.queue:
                break
            self.head_end, self.head_t = self.queue.popleft()
            if current == done:
                break
        if self.refill:
            self._send(done - previous, t)
        elif self.got == 0 and done < self.sent:
            self.expect = self.pairs[done % self.count][1]
        else:
            self.expect = None

    def _send(self, count: int, t: int) -> None:
        index = self.sent
        if count == 1:
            message = self.pairs[index % self.count][0]
        elif self.fixed and (index * self.fixed) % self.period + count * self.fixed <= self.span:
            at = (index * self.fixed) % self.period
            message = self.stream.sent[at:at + count * self.fixed]
        else:
            stream = self.stream
            at = stream.offset(index)
            message = stream.window(stream.sent, at, stream.offset(index + count) - at)
        self.sent = index + count
        if self.head_end == self.done:  # nothing in flight: this batch is the head
            self.head_end, self.head_t = self.sent, t
        else:
            self.queue.append((self.sent, t))
        self.expect = self.pairs[self.done % self.count][1] if self.got == 0 else None
        self._write(message)

    def _write(self, data: bytes) -> None:
        """Send now, with one write(2), as the C generator does: a request queued to the end of
        the loop's iteration (as uvloop's transport.write() does) reaches the server in bursts, and
        client and server end up taking turns instead of working in parallel (measured: several %
        fewer requests/s). What the socket does not take at once waits in `pending`, and later
        writes queue behind it until it has drained, so the byte order on the wire never changes.
        """
        if self.pending:
            self.pending += data
            return
        try:
            sent = os_write(self.fd, data)
        except OSError:  # full (EAGAIN), or failing: the next write, or the next read, meets the error
            sent = 0
        if sent < len(data):
            self._hold(memoryview(data)[sent:])

    def _hold(self, rest) -> None:
        if not self.alive:
            return
        self.pending += rest
        self.poller.watch_writes(self.fd, True)

    def writable(self) -> None:
        """The Poller: the socket takes more of what is pending."""
        try:
            sent = os_write(self.fd, self.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(exc)
            return
        del self.pending[:sent]
        if not self.pending:
            self.poller.watch_writes(self.fd, False)
