"""I/O multiplexing with poll() (tutorial section 1.3).

Who waits where: as with `select`, the process sleeps in one call, `poll()`, for all its
descriptors at once; the first phase of input (waiting for data) blocks there, the second (copying
it) in `recv()`. `poll()` takes an array of `(fd, events)` records instead of three bitmaps, so
any descriptor number works: there is no FD_SETSIZE limit, and a descriptor can be watched for
writing without being rebuilt into a set each time.

What wakes it: data, a new client, send buffer space, a hang-up or error (POLLHUP, POLLERR are
always reported). It waits without a timeout unless something is scheduled (an idle timeout, the
end of the drain, resuming accepts), so an idle server does not wake at all.

What it costs: the array is still copied into the kernel and every entry checked on every call,
and Python still builds and walks the result: O(n) per wake-up in the number of connections, idle
or not. `poll` fixes select's descriptor limit, not its cost; `epoll` fixes the cost by keeping the
interest list in the kernel.

How it fails: like every readiness model here it never blocks on one client (all calls are
non-blocking, "try first, then wait"), applies back-pressure, and pauses accepting when
descriptors run out instead of looping on a listener that stays readable.
"""

import select

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import ReadinessLoop, serve_with

MODEL = ModelInfo(
    kind="readiness",
    name="poll", family="I/O multiplexing", section="1.3", waits_in="poll()",
    cost="O(n) per call (the whole array copied and checked); no descriptor-number limit",
    multi_worker=True)


class PollLoop(ReadinessLoop):
    name = "poll"

    def __init__(self, *args):
        super().__init__(*args)
        self.poller = select.poll()

    def watch(self, fd, mask):
        self.poller.register(fd, mask)

    def rewatch(self, fd, mask):
        self.poller.modify(fd, mask)

    def unwatch(self, fd, closing=False):
        self.poller.unregister(fd)

    def wait(self, timeout):
        self.stats.wait_calls += 1
        self.dispatch(self.poller.poll(None if timeout is None else timeout * 1000))

    def close_waiter(self):
        pass  # a poll object holds no descriptor of its own


def serve(listener, config, stats, stop, new_session):
    serve_with(PollLoop, listener, config, stats, stop, new_session)
