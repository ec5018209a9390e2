"""Blocking I/O with a process per connection (tutorial section 1.1).

Who waits where: the parent sleeps in `accept()`; for each connection it `fork()`s a child that
sleeps in `recv()` and `sendall()` on that one socket, exactly like the iterative server, and exits
when the client leaves. Both phases of input block, in the child.

What wakes whom: the kernel wakes the child whose socket is readable; the parent is woken by new
connections and by SIGCHLD, on which it reaps finished children (`waitpid(..., WNOHANG)`), so no
zombies pile up. SIGCHLD is held from `fork()` until the new PID is in the parent's set of
children, and the handler counts out only PIDs of that set: a child that exits at once is still counted
out, and no PID is ever kept (and signalled at shutdown) after the kernel may have reused it.
A child is born with the parent's signal mask, which leaves SIGINT and SIGTERM to a relay thread
(serving/signals.py); the parent's relay is not copied by `fork()`, so the child starts one of its
own, and a stop sent to it meanwhile waits for that. Each child asks the kernel to send it
SIGTERM if the parent dies (`PR_SET_PDEATHSIG`), and the parent forwards SIGTERM to its children
when it stops, then waits for them: no child outlives the server.

What it costs: a whole process per connection. `fork()` copies the page tables and marks memory
copy-on-write; Python's reference counting then writes to shared pages and un-shares them, so
each child grows towards the parent's size. Creation per client is the most expensive of the
family (the lab measures it), and the process table and memory are the limits. What it buys:
isolation: a child that crashes takes only its own client with it (the model nginx and Apache's
prefork keep for that reason). Counters of a child reach the parent when the child exits.
How it fails: out of processes or memory, `fork()` fails (EAGAIN, ENOMEM); that client's
connection is closed and counted, and the clients already served keep their children.
A second SIGTERM during the drain stops the parent at once, and its children are killed with it.
"""

import contextlib
import ctypes
import os
import signal

from iomodels.serving import signals, toolkit
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._blocking import accept_forever, serve_connection
from iomodels.serving.stats import SharedCounters, Stats

MODEL = ModelInfo(
    kind="blocking", runs_in_thread=False,
    name="forking", family="blocking I/O + process per connection", section="1.1",
    waits_in="recv() in each connection's process",
    cost="a process (fork, copied page tables, memory) per connection; isolated failures")

_PR_SET_PDEATHSIG = 1


def serve(listener, config, stats, stop, new_session):
    children: set[int] = set()
    stats.children = SharedCounters()

    def reap(signum=None, frame=None):
        # fork_child registers every PID before a SIGCHLD can be handled, so each child reaped
        # here is in `children`; one reaped is forgotten at once, so it is never signalled at
        # shutdown after the kernel may have given its PID to another process.
        while children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in children:  # not ours to count otherwise (a nested run of this handler)
                children.discard(pid)
                stats.connections_open -= 1

    def fork_child(conn):
        # SIGCHLD is held from fork() until the PID is in `children`: otherwise the handler could
        # run in between, miss a child that had already exited, and the PID stay in the set.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN/ENOMEM: out of processes or memory
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            toolkit.connection_failed(exc, stats)
            toolkit.release(conn, stats)
            return
        if pid == 0:
            listener.close()
            _run_child(conn, new_session(), config, stats.children, os.getppid(), held)
        stats.processes_started += 1
        children.add(pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a SIGCHLD held meanwhile arrives now
        conn.close()  # the child has its own copy

    parent_pid = os.getpid()
    previous = signal.signal(signal.SIGCHLD, reap)
    try:
        listener.setblocking(True)
        accept_forever(listener, config, stats, stop, fork_child)
    finally:
        if os.getpid() == parent_pid:
            signal.signal(signal.SIGCHLD, previous)
            toolkit.stop_processes(children, stop.finish_by())
            stats.connections_open -= len(children)


def _run_child(conn, session, config, totals: SharedCounters, parent_pid: int, mask) -> None:
    """The child: serve one connection with blocking calls, report counters, exit. Never returns.
    It starts with SIGCHLD held (`mask` is the mask from before), and its stop signals wait, blocked,
    for its own relay."""
    status = 0
    try:
        stop = toolkit.Stop(config.drain_timeout)
        signals.SignalRelay({signal.SIGINT: stop.request, signal.SIGTERM: stop.request})
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            stop.request()
        stats = Stats()
        serve_connection(conn, session, config, stats, stop)
        totals.add(stats)
    except BaseException:
        toolkit.log.exception("child process failed")
        status = 1
    finally:
        os._exit(status)
