"""The stdlib event loop: asyncio with a protocol (readiness, a "reactor"; tutorial 1.3).

This is not the tutorial's asynchronous I/O (1.4), whatever the name says. asyncio's loop is the
multiplexing model of section 1.3 with callbacks on top: it blocks in `epoll_wait()` (through
`selectors.EpollSelector`) until some socket is *ready*, then it calls `recv()` itself and the
copy from the kernel into our memory happens right there, in our thread, before `data_received`
runs. Waiting is shared by all connections; copying is ours. "async" names the programming style
(callbacks, coroutines), not the kind of I/O underneath. The completion model, where the kernel
does the copy and only then tells us, is the `io_uring` model.

Who waits where: one thread sleeps in `epoll_wait()` for every socket at once; the kernel wakes it
when any becomes readable or writable. Each turn of the loop runs the callbacks for what is ready:
`_read_ready` -> `recv` (at most `--recv-size` bytes) -> our `data_received` -> `transport.write`
-> `send` (tried at once; only what the kernel did not take is buffered and sent when the socket
is writable).

What it costs: one thread and one process for all connections, so memory per connection is a
transport, a protocol and a session (a few KiB), and no context switch per client. The price is
Python on every event: readiness dispatch, a callback, an attribute-heavy transport, all under the
GIL on one core. Per request that is more CPU than the hand-written `epoll` loop, because the
machinery is general (handles, ready queue, timers). It fails slowly: a callback that blocks or
loops stalls every connection, since nothing else runs until it returns.

Counters: `wait_calls`/`loop_iterations` count `epoll_wait` calls (a counting selector),
`empty_wakeups` the ones that timed out with nothing ready, `events` the protocol callbacks.
Back-pressure, limits and shutdown are shared with `uvloop` (models/_eventloop.py).
"""

import asyncio
import selectors

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._eventloop import serve_on

MODEL = ModelInfo(
    kind="event loop",
    name="asyncio", family="event loop (readiness, reactor)", section="1.3",
    waits_in="epoll_wait() inside asyncio's selector",
    cost="one thread for all connections; Python loop machinery on every event",
    multi_worker=True)


class _CountingSelector(selectors.EpollSelector):
    """The selector asyncio waits in, counting its waits: the loop's only blocking call."""

    def __init__(self, stats):
        super().__init__()
        self._stats = stats

    def select(self, timeout=None):
        ready = super().select(timeout)
        stats = self._stats
        stats.wait_calls += 1
        stats.loop_iterations += 1
        # select(0) is the loop polling because callbacks are already queued: not a wake-up.
        if not ready and timeout != 0:
            stats.empty_wakeups += 1
        return ready


def serve(listener, config, stats, stop, new_session):
    serve_on(lambda: asyncio.SelectorEventLoop(_CountingSelector(stats)), listener, config, stats, stop,
             new_session)
