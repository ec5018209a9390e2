"""I/O multiplexing with select() (tutorial section 1.3).

Who waits where: the whole process sleeps in `select()`, handing the kernel three sets of
descriptors (ours: the listener and connections to read from, connections with replies to send).
The kernel checks every one, puts the process to sleep on all of their wait queues, and returns
when at least one is ready or `--poll-interval` passes (0.5 s by default: the tutorial's "ask every
half second"). Then `accept()`/`recv()`/`send()` on a ready descriptor does not wait for data; only
the copy between kernel and user memory remains. So the first phase of input (waiting for data)
blocks in `select()`, for all connections at once, and the second (copying) in `recv()`: one
process serves many clients, which blocking I/O cannot do without threads.

What wakes it: data, a new client, send buffer space, or the timeout. A timeout that finds nothing
ready is an empty wake-up (`empty_wakeups`): with one idle client, about two a second. They cost
little, but they are why a server with nothing to time out should not poll.

What it costs: every call copies the sets into the kernel, which scans each descriptor and builds
the result; Python then scans the result. That is O(n) in the number of watched connections on
every wake-up, even when one of them is ready. As the tutorial stresses, multiplexing does not make
one connection faster (an extra system call per round trip can make it slower than a thread per
connection); it makes many connections cheap to hold.

How it fails: `select()` takes bitmaps of FD_SETSIZE = 1024 bits, so a descriptor numbered 1024
or more cannot be passed at all (Python raises ValueError; in C it is memory corruption). Once
1024 descriptors are open, a new connection gets such a number: we reset it at once, count it in
`rejected_fd_too_high`, warn once per burst of refusals, and keep serving the connections we have;
when descriptors below 1024 free up, new clients are served again. `poll` and `epoll` have no
such limit.
"""

import logging
import select

from iomodels.serving import toolkit
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import ReadinessLoop, serve_with

MODEL = ModelInfo(
    kind="readiness",
    name="select", family="I/O multiplexing", section="1.3",
    waits_in="select()",
    cost="O(n) sets copied and scanned per call; descriptors >= 1024 refused; wakes every --poll-interval",
    multi_worker=True, reads=("recv_size", "poll_interval"))

log = logging.getLogger("iomodels")

# glibc's fd_set is 1024 bits; Python checks every descriptor against it before calling select().
FD_SETSIZE = 1024


class SelectLoop(ReadinessLoop):
    name = "select"

    def __init__(self, *args):
        super().__init__(*args)
        self.refused_in_burst = 0  # connections refused since the last one that fitted
        self.readers: set[int] = set()
        self.writers: set[int] = set()
        self.poll_interval = self.config.poll_interval

    def watch(self, fd, mask):
        self.rewatch(fd, mask)

    def rewatch(self, fd, mask):
        (self.readers.add if mask & self.READ else self.readers.discard)(fd)
        (self.writers.add if mask & self.WRITE else self.writers.discard)(fd)

    def unwatch(self, fd, closing=False):
        self.readers.discard(fd)
        self.writers.discard(fd)

    def close_waiter(self):
        pass  # select() keeps nothing in the kernel between calls

    def fits(self, sock):
        """A descriptor select() cannot hold: reset the connection, warn once per burst."""
        fd = sock.fileno()
        if fd < FD_SETSIZE:
            if self.refused_in_burst:
                log.info("select: accepting again after refusing %d connections", self.refused_in_burst)
                self.refused_in_burst = 0
            return True
        self.stats.accepts += 1
        self.stats.rejected_fd_too_high += 1
        if not self.refused_in_burst:
            log.warning("select: descriptor %d does not fit (FD_SETSIZE %d): refusing new connections until "
                        "descriptors below the limit free up; %d open connections are still served",
                        fd, FD_SETSIZE, len(self.conns))
        self.refused_in_burst += 1
        toolkit.abort(sock)
        return False

    def wait(self, timeout):
        stats = self.stats
        stats.wait_calls += 1
        if timeout is None or timeout > self.poll_interval:
            timeout = self.poll_interval
        readable, writable, _ = select.select(self.readers, self.writers, (), timeout)
        # As (fd, bits) pairs, the shape poll() returns, the shared dispatch (and its short path
        # for a request on an idle connection) applies. A connection closed in the read pass may
        # have been replaced by a new one with the same number: servicing that one as writable is
        # harmless (it has nothing to send yet).
        self.dispatch([(fd, self.READ) for fd in readable] + [(fd, self.WRITE) for fd in writable])


def serve(listener, config, stats, stop, new_session):
    serve_with(SelectLoop, listener, config, stats, stop, new_session)
