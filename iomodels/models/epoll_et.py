"""I/O multiplexing with epoll, edge-triggered (tutorial section 1.3, "event-driven I/O").

Who waits where: as with `epoll`, the process sleeps in `epoll_wait()` for all connections (the
first phase of input) and copies data in `recv()` (the second). The difference is what a report
means. With EPOLLET, `epoll_wait()` reports a descriptor when its state changes (data arrived,
space freed up, a client queued), once, not for as long as it stays ready.

What that demands: a handler must read until `recv()` says EAGAIN, send until `send()` says EAGAIN
or the reply is gone, and accept until `accept()` says EAGAIN. Stopping earlier, with data still
in the socket, means no further report will come for it: the connection hangs with its request
unanswered. (A short read is not proof of an empty socket: data and the peer's FIN can arrive
together, and only one edge announces both.) The same care applies when back-pressure resumes
reading: the data waiting in the socket was announced long ago, so after sending we try to read
again instead of waiting for a report.

What it costs: compared with level-triggered, one extra call per event that returns EAGAIN (the
proof the socket is drained): `recv_eagain` and `events` in the counters show it. What it saves:
a socket that stays readable is not reported again and again, which matters with several threads
waiting on one epoll instance (each report wakes one of them) and with handlers that deliberately
leave data for later. Interest still changes with the connection (EPOLLOUT only while output is
pending, EPOLLIN dropped while paused), and re-arming with `epoll_ctl(MOD)` reports a descriptor
that is already ready, so nothing is lost there.

How it fails: exactly as `epoll` does, plus the hang above if any path stops short of EAGAIN;
the tests with large transfers and back-pressure are what guard against it.
"""

import select

from iomodels.models import ModelInfo
from iomodels.models._readiness import serve_with
from iomodels.models.epoll import EpollLoop

MODEL = ModelInfo(
    name="epoll-et", family="I/O multiplexing, event-driven (edge-triggered)", section="1.3",
    waits_in="epoll_wait() with EPOLLET",
    cost="one report per change; one extra recv()/send()/accept() per event to reach EAGAIN",
    multi_worker=True)


class EdgeEpollLoop(EpollLoop):
    name = "epoll-et"
    trigger = select.EPOLLET
    edge = True


def serve(listener, config, stats, stop):
    serve_with(EdgeEpollLoop, listener, config, stats, stop)
