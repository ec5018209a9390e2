"""Blocking I/O with a thread per connection (tutorial section 1.1).

Who waits where: the main thread sleeps in `accept()`; each accepted connection gets a new thread
that sleeps in its own `recv()`, so both phases of input (waiting for data, copying it) still block,
but only the thread of that one client. The kernel wakes exactly the thread whose socket became
readable, and the scheduler switches to it: a context switch per wake-up.

What it costs: one thread per connection, created when the client arrives and destroyed when it
leaves. Each thread reserves a stack (8 MiB of virtual memory, tens of KiB resident), kernel
scheduling state, and a context switch every time it wakes. Python adds the GIL: threads take turns
running Python code, so only the waiting runs in parallel. At hundreds or thousands of connections
the tutorial's warning comes true: memory and switching grow with the number of clients, idle or
not, and creating threads at the rate clients arrive becomes a cost of its own (the thread pool
answers that). glibc also gives busy threads malloc arenas of their own (up to 8 per core), so
after bursts of many concurrent clients the heap stays fragmented across them: a few MiB more,
levelling off after some rounds (`MALLOC_ARENA_MAX=1` or `2` trades that for contention; measured
in tests/reliability/test_churn.py). It fails by running out: `RuntimeError: can't start new
thread` when the process's thread or memory limit is reached; that connection is reset (counted
in `rejected_no_thread`, one warning per episode), the rest keep going.

Creating a thread per client in the accept loop also makes it the slowest to accept under load:
at SIGTERM the listener is shut down, and the clients still in its queue are reset by the kernel
(every model does the same; for this one the queue is longest).

Everything else (idle timeout, max connections, drain on SIGTERM) is the shared blocking code;
the threads started are counted in `threads_started`.
"""

import threading

from iomodels.serving import toolkit
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._blocking import accept_forever, serve_connection

MODEL = ModelInfo(
    kind="blocking",
    name="threaded", family="blocking I/O + thread per connection", section="1.1",
    waits_in="recv() in each connection's thread",
    cost="a thread (stack, scheduling, context switches) per connection, created per client")


CONNECTION_THREAD = "iomodels-connection"


def serve(listener, config, stats, stop, new_session):
    refused_in_episode = 0

    def start(conn):
        nonlocal refused_in_episode
        try:
            toolkit.start_thread(serve_connection, conn, new_session(), config, stats, stop,
                                 name=CONNECTION_THREAD)
        except RuntimeError as exc:  # can't start new thread: out of threads or memory
            # Like EMFILE on accept: one line per episode, not a traceback per refused client.
            if not refused_in_episode:
                toolkit.log.warning("threaded: %s; resetting new connections until threads free up", exc)
            refused_in_episode += 1
            stats.rejected_no_thread += 1
            toolkit.release(conn, stats, reset=True)
            return
        stats.threads_started += 1
        if refused_in_episode:
            toolkit.log.info("threaded: starting threads again after resetting %d connections",
                             refused_in_episode)
            refused_in_episode = 0

    listener.setblocking(True)
    accept_forever(listener, config, stats, stop, start)
    # Wait for the connections still being served (the drain), found by name: keeping our own
    # set of threads would cost the accept loop a clean-up pass per connection.
    deadline = stop.finish_by()
    for thread in threading.enumerate():
        if thread.name == CONNECTION_THREAD:
            thread.join(toolkit.seconds_until(deadline))
