"""A server's signals are taken by one thread of ours, in `sigwait()`, never by a handler.

The signals we act on (SIGINT, SIGTERM, SIGUSR1, SIGHUP) are blocked in every thread of the
process, and `SignalRelay`'s thread takes each one synchronously with `sigwait()` and runs its
action there, one at a time: the multithreaded server's way of taking signals (Stevens and Rago,
APUE 12.8). Nothing depends on the main thread running Python code.

It used to: a Python signal handler runs in the main thread, between two bytecodes, after the C
handler has noted the signal. A signal that lands after the main thread's last check and before
it enters a blocking `accept()` or `recv()` is noted and then waits, with its handler, until that
call returns: for a server with no client coming, forever (a SIGTERM lost like that left the
threaded server in `accept()`, about 1 run in 50 of a test that signals just after a reply).
Taking the signal in a thread of its own closes that window, and it also removes what a handler
could do wrong: deadlock on a lock the interrupted code holds, re-enter itself, raise into a
model's loop.

Every thread inherits its creator's signal mask, so the mask is set in the creating thread
before the relay's thread (and any later one: connection threads, the metrics server, the drain
timer, threads that libraries start) exists. A process forked from here inherits the mask too,
and takes its signals with a relay of its own (a forking child, a worker).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from iomodels.serving import toolkit

_STOPS = (signal.SIGINT, signal.SIGTERM)


class SignalRelay:
    """`actions[signum]()` runs in the relay thread for each `signum` received, one at a time.

    Create it in the process's only thread, or in one whose mask every other thread shares.
    """

    def __init__(self, actions: dict[int, Callable[[], None]]):
        self.actions = actions
        self._closing = False
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(actions))
        # Blocked, a signal waits for sigwait() whatever its disposition, except SIG_IGN, which
        # discards it when it is sent (a shell starts background jobs with SIGINT ignored).
        self._previous = {signum: signal.signal(signum, signal.SIG_DFL) for signum in actions}
        self._thread = toolkit.start_thread(self._relay, name="signal-relay")

    def _relay(self) -> None:
        while True:
            signum = signal.sigwait(self.actions)
            if self._closing:
                return
            try:
                self.actions[signum]()
            except Exception:  # a bug in an action: reported, and the server keeps serving
                toolkit.log.exception("handling %s failed", signal.Signals(signum).name)

    def close(self, timeout: float = 5.0) -> None:
        """End the relay; from now on SIGINT/SIGTERM have their previous dispositions, and the
        other signals are ignored (a late SIGUSR1 or SIGHUP must not kill a server that is
        finishing). One of them that arrives meanwhile is taken as it will be from now on."""
        self._closing = True
        # Any signal it waits for wakes it: sent to the thread, it is taken before one sent to the
        # process (a real-time signal would be simpler to tell apart, but its queue can be full).
        signal.pthread_kill(self._thread.ident, next(iter(self.actions)))
        self._thread.join(timeout)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if signum in _STOPS else signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
