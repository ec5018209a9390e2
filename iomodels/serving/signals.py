"""Signal handlers that only take note; a thread of ours does what the signal asks.

A Python signal handler runs in the main thread between two bytecodes of whatever it interrupted:
inside a model's loop, halfway through `threading.Thread.start` (holding a lock the handler would
then wait for forever), or inside an earlier run of the same handler. Work done there (writing a
file, starting a timer thread, importing a module) can deadlock, re-enter itself, or raise into
the model's loop. So the handler here writes the signal's number to a pipe, which is
async-signal-safe and cannot raise (a full pipe drops the byte: the requests already queued ask
for the same things), and one thread, `SignalRelay`'s, reads the pipe and runs the actions one at
a time. CPython's `signal` documentation gives the same advice; asyncio's `add_signal_handler` is
built the same way (a wake-up fd read by the loop).

The thread leaves SIGINT/SIGTERM/SIGUSR1 to the main thread (toolkit.start_thread), so a blocked
`accept()` there is still interrupted, and the handler runs as soon as the signal arrives.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable

from iomodels.serving import toolkit

_QUIT = 0  # not a signal number: tells the relay thread to finish


class SignalRelay:
    """`actions[signum]()` runs in the relay thread for each `signum` received, one at a time."""

    def __init__(self, actions: dict[int, Callable[[], None]]):
        self.actions = actions
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous = {}
        self._thread = toolkit.start_thread(self._relay, name="signal-relay")
        for signum in actions:
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum, frame) -> None:
        with contextlib.suppress(OSError):  # a full pipe: the requests queued ask for the same
            os.write(self._write, bytes((signum,)))

    def _relay(self) -> None:
        while True:
            select.select([self._read], [], [])
            try:
                received = os.read(self._read, 256)
            except BlockingIOError:
                continue
            for signum in received:
                if signum == _QUIT:
                    return
                try:
                    self.actions[signum]()
                except Exception:  # a bug in an action: reported, and the server keeps serving
                    toolkit.log.exception("handling %s failed", signal.Signals(signum).name)

    def close(self, timeout: float = 5.0) -> None:
        """Put the previous stop handlers back (other signals are ignored from now on), let the thread finish what is queued, release the pipe."""
        for signum, previous in self._previous.items():
            # Past this point a late SIGUSR1 or SIGHUP must not kill a server that is finishing.
            stops = (signal.SIGINT, signal.SIGTERM)
            signal.signal(signum, previous if signum in stops else signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.write(self._write, bytes((_QUIT,)))
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._read)
            os.close(self._write)
