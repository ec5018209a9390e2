"""I/O multiplexing with epoll, level-triggered (tutorial section 1.3, "event-driven I/O").

Who waits where: the process sleeps in `epoll_wait()`, for every connection at once; the first
phase of input (waiting for data) blocks there, the second (the copy) in `recv()`. Unlike `select`
and `poll`, the list of what we watch lives in the kernel: `epoll_ctl()` adds, changes or removes
one descriptor when that changes, and each socket, when it becomes ready, puts itself on the epoll
instance's ready list from its own wake-up callback. `epoll_wait()` only hands back that list.

What wakes it: a socket's callback, when data or a client arrives, send buffer space frees up
(asked for only while a reply is pending: a socket is nearly always writable, and asking for it
otherwise would wake us for nothing), or the peer hangs up. Nothing else: with no timeout
scheduled it sleeps with no timeout, so an idle server uses no CPU at all.

Level-triggered means a descriptor is reported on every call for as long as it is ready: read once
per event, and if data remains, the next `epoll_wait()` says so again. It forgives a handler that
does not drain the socket; the price is that anything left ready is reported again (one reason a
paused reader must leave the interest list, and a shut-down listener too). `epoll-et` shows the
other mode.

What it costs: O(ready) per wake-up instead of O(watched), plus one `epoll_ctl()` system call when
a connection starts or stops waiting for something; a connection that only ever gets small replies
sent at once never changes its interest after the first. This is what nginx, libuv and Python's
`selectors.DefaultSelector` use on Linux. The cost per request here is mostly Python's own:
`recv`, `upper`, `send`, and the bookkeeping around them.

How it fails: as every readiness model here, it never blocks on one client, applies back-pressure
by dropping EPOLLIN for a peer whose replies pile up, closes a connection on its own error only,
and pauses accepting when descriptors run out.
"""

import select

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import ReadinessLoop, serve_with

MODEL = ModelInfo(
    kind="readiness",
    name="epoll", family="I/O multiplexing, event-driven (level-triggered)", section="1.3",
    waits_in="epoll_wait()",
    cost="O(ready) per wake-up; an epoll_ctl() per change of interest; nothing while idle",
    multi_worker=True)


class EpollLoop(ReadinessLoop):
    name = "epoll"
    # READ/WRITE/READABLE/WRITABLE: the shared poll() bits, which epoll uses too.
    # Added to every registration: 0 here, EPOLLET for epoll-et.
    trigger = 0

    def __init__(self, *args):
        super().__init__(*args)
        self.epoll = select.epoll()

    def watch(self, fd, mask):
        self.epoll.register(fd, mask | self.trigger)

    def rewatch(self, fd, mask):
        self.epoll.modify(fd, mask | self.trigger)

    def unwatch(self, fd, closing=False):
        # Closing a descriptor removes it from the epoll set (it is never dup()ed here): skip
        # the system call.
        if not closing:
            self.epoll.unregister(fd)

    def wait(self, timeout):
        self.stats.wait_calls += 1
        self.dispatch(self.epoll.poll(-1 if timeout is None else timeout))

    def close_waiter(self):
        self.epoll.close()


def serve(listener, config, stats, stop, new_session):
    serve_with(EpollLoop, listener, config, stats, stop, new_session)
