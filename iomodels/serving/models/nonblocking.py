"""Non-blocking I/O, busy polling (tutorial section 1.2).

Who waits where: nobody, ever. The listener and every connection are non-blocking, and one loop
tries `accept()`, then `recv()` and `send()` on every connection, over and over. When the kernel
has nothing (no queued client, no data, a full send buffer) the call returns at once with EAGAIN
and the loop moves on. Only the second phase of input blocks: the kernel copying data that is
already there into our buffer, inside `recv()`. The first phase, waiting for the data to arrive,
is replaced by asking again, and again.

What wakes it: nothing needs to: it never sleeps. That is its cost, and the tutorial's point ("the
laptop's fan gets louder"): with a single idle client connected, or with none, it keeps a whole
core busy, and almost every call it makes fails. Run it with `--stats-file` and look at
`recv_eagain` against `recv_calls`, and at `loop_iterations` (each turn is one pass over every
socket; `empty_wakeups` counts the passes that found nothing at all to do). The work per pass grows
with the number of connections, idle or not, and a busy core is also a core the clients and the
rest of the machine do not get. The tutorial ends the section with the remedy: ask the kernel to
watch many sockets at once and wake us when one is ready, which is `select` (section 1.3).

What it gets right that the tutorial's version does not (the shared readiness code does it):
- a partial `send()` keeps the rest for the next pass instead of dropping it;
- a peer that closed, reset, or made `send()` fail is closed and forgotten once, never sent to again;
- connections are removed outside the loop over them (the tutorial removes from the lists it is
  iterating, and appends an empty reply for a peer that just closed);
- back-pressure: a peer that sends and never reads stops being read once its unsent replies pass
  the high-water mark, so it cannot grow our memory;
- out of descriptors (EMFILE), accepting pauses with a growing delay instead of failing in a loop.
`--idle-timeout`, `--max-connection-age` and the drain on SIGTERM work as in every model; the stop
request is noticed at the next pass, since there is no wait for it to interrupt.
"""

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import ReadinessLoop, serve_with

MODEL = ModelInfo(
    kind="readiness",
    name="nonblocking", family="non-blocking I/O, busy polling", section="1.2",
    waits_in="nowhere: retries accept()/recv()/send() on every socket in a loop",
    cost="a whole core, even with no client; an EAGAIN per idle socket per pass")


class BusyLoop(ReadinessLoop):
    name = "nonblocking"

    # Nothing to tell a kernel: every pass tries every socket (scan), whatever it waits for.
    def watch(self, fd, mask):
        pass

    def rewatch(self, fd, mask):
        pass

    def unwatch(self, fd, closing=False):
        pass

    def close_waiter(self):
        pass

    def wait(self, timeout):
        stats = self.stats
        progress = stats.bytes_in + stats.bytes_out + stats.accepts + stats.connections_closed
        self.scan()
        if progress == stats.bytes_in + stats.bytes_out + stats.accepts + stats.connections_closed:
            stats.empty_wakeups += 1
        if self.stop.requested and not self.draining:
            self.next_due = 0.0  # no stop pipe to wake us: look at the flag on every pass


def serve(listener, config, stats, stop, new_session):
    serve_with(BusyLoop, listener, config, stats, stop, new_session)
