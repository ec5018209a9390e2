"""I/O multiplexing with epoll, edge-triggered (tutorial section 1.3, "event-driven I/O").

Who waits where: as with `epoll`, the process sleeps in `epoll_wait()` for all connections (the
first phase of input) and copies data in `recv()` (the second). The difference is what a report
means. With EPOLLET, `epoll_wait()` reports a descriptor when its state changes (data arrived,
space freed up, a client queued), once, not for as long as it stays ready.

What that demands: a handler must drain what it was told about: read until the socket is empty,
send until `send()` says EAGAIN or the reply is gone, accept until `accept()` says EAGAIN.
Stopping earlier, with data still in the socket, means no further report will come for it: the
connection hangs with its request unanswered. Proof of an empty socket is EAGAIN, or a read that
returned less than it asked for (epoll(7) says so for stream sockets) - with one catch: data and
the peer's FIN can arrive together, one edge announces both, and after the short read the FIN is
still unread. We ask for EPOLLRDHUP, which reports that FIN, and read on when it is set. The same
care applies when back-pressure resumes reading: the data waiting in the socket was announced
long ago, so after sending we try to read again instead of waiting for a report.

What it costs: the naive handler pays one extra `recv()` per event just to hear EAGAIN (with its
Python exception, a quarter of a request's CPU here); the short-read proof saves it in the common
case, so `recv_eagain` stays near zero under ping-pong load. What it saves:
a socket that stays readable is not reported again and again, which matters with several threads
waiting on one epoll instance (each report wakes one of them) and with handlers that deliberately
leave data for later. Interest still changes with the connection (EPOLLOUT only while output is
pending, EPOLLIN dropped while paused), and re-arming with `epoll_ctl(MOD)` reports a descriptor
that is already ready, so nothing is lost there.

How it fails: exactly as `epoll` does, plus the hang above if any path stops before the socket
is drained; the tests with large transfers, back-pressure and a FIN arriving with the last data
are what guard against it.
"""

import select

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import serve_with
from iomodels.serving.models.epoll import EpollLoop

MODEL = ModelInfo(
    kind="readiness",
    name="epoll-et", family="I/O multiplexing, event-driven (edge-triggered)", section="1.3",
    waits_in="epoll_wait() with EPOLLET",
    cost="one report per change; one extra recv()/send()/accept() per event to reach EAGAIN",
    multi_worker=True)


class EdgeEpollLoop(EpollLoop):
    name = "epoll-et"
    # EPOLLRDHUP: told whether the peer's FIN is already here, a short read can prove the socket
    # drained (see SHORT_READ_UNSURE in _readiness.py) and the recv that only says EAGAIN is saved.
    trigger = select.EPOLLET | select.EPOLLRDHUP
    SHORT_READ_UNSURE = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
    edge = True


def serve(listener, config, stats, stop, new_session):
    serve_with(EdgeEpollLoop, listener, config, stats, stop, new_session)
