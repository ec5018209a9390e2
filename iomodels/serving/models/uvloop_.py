"""The asyncio model's code on uvloop: the same protocol, a loop written in C on libuv (tutorial 1.3).

Readiness, not asynchronous I/O: libuv's Linux backend blocks in `epoll_wait()` until a socket is
ready, then calls `read()` into libuv's buffer (in our thread: we still do the copy; up to 256 KiB,
whatever `--recv-size` says), and uvloop calls the same `data_received` the `asyncio` model uses
(models/_eventloop.py).
One implementation, two loops: what differs is only who runs the loop machinery.

Who waits where: one thread in libuv's `epoll_wait()` for all connections. What it costs: the
same memory as asyncio, but the dispatch between the kernel and our callback (readiness
bookkeeping, the read, the write buffer, timers) is compiled C instead of Python, so less CPU per
request; our callback is then most of what is left. `transport.write` tries the send first,
as asyncio does, and libuv buffers the rest.

How it fails: as any single-threaded loop (a slow callback stalls everyone). We accept
connections ourselves and hand them to the loop, so out of descriptors it pauses accepting as
every model does, instead of libuv's trick of accepting and dropping the waiting peers.

Counters: libuv's loop is not visible from Python, so `loop_iterations` counts the turns that ran
at least one of our callbacks, and `events` the callbacks; `wait_calls` stays 0.
"""

import uvloop

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._eventloop import serve_on

MODEL = ModelInfo(
    kind="event loop",
    name="uvloop", family="event loop on libuv (readiness, reactor)", section="1.3",
    waits_in="epoll_wait() inside libuv",
    cost="one thread for all connections; loop machinery in C, our callback in Python",
    # libuv reads into its own 256 KiB buffer: --recv-size has no say (see _eventloop.py).
    multi_worker=True, reads=())


def serve(listener, config, stats, stop, new_session):
    serve_on(uvloop.new_event_loop, listener, config, stats, stop, new_session, count_turns=True)
