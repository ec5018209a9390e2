"""Signal-driven I/O (Stevens' fifth I/O model, UNIX Network Programming 6.2; beyond the tutorial).

Who waits where: each socket is put in asynchronous mode (`O_ASYNC`) with an owner (`F_SETOWN`,
here `F_SETOWN_EX` naming this very thread), and the kernel sends the owner a signal whenever the
socket's state changes. The process could do other work meanwhile; this server has none, so it
blocks the signal and takes it synchronously in `sigwaitinfo()`/`sigtimedwait()` instead of in a
handler (a handler may interrupt anything and may call almost nothing; Python's run only between
bytecodes anyway). So the first phase of input (waiting for data) blocks in `sigtimedwait()`, the
second (the copy) in `recv()`: the same split as `select`, with a signal as the wake-up.

What wakes it: a signal per event. Plain SIGIO says only "something happened on some descriptor
you own": it carries no descriptor, and since standard signals are not queued, ten events while it
is pending arrive as one. The only correct answer is to try every socket (what this model does in
its fallback, `scan()`). Linux adds `F_SETSIG`: with a real-time signal (here SIGRTMIN) every event
is queued separately and its `siginfo` names the descriptor (`si_fd`) and the kind of event
(`si_band`, as POLLIN/POLLOUT/POLLHUP). Python's `signal.sigtimedwait` does not expose `si_fd`, so
the call is made through ctypes.

Why it is rarely used for TCP (Stevens: "signal-driven I/O is next to useless with a TCP socket"):
for TCP the signal fires for almost everything: a connection completes on the listener, data
arrives (per segment, not per message), an ACK frees send space, the peer half-closes, closes, or
resets. The signal says something happened, not which socket or what, and even Linux's `si_band`
does not say how much or whether it is still true: by the time it is dequeued the data may have
been read already, or the descriptor closed and reused by another connection (a stale signal:
harmless here, since every call is non-blocking, but work for nothing). Interest cannot be narrowed
(no "readable only"), so every event must be handled like an edge: read, write and accept until
EAGAIN, and read again when back-pressure lifts, because the data waiting was announced long ago.
Signals are process-wide state that libraries and threads can disturb, the queue is bounded, and
each event costs its own system call to dequeue where `epoll_wait()` returns hundreds at once.
epoll replaced it; it survives for UDP (one datagram, one signal) and in a few old servers.

What it costs: compare `signals` with `events` and `recv_eagain` in the counters: one signal and
one `sigtimedwait()` per state change, many of them stale. Idle, it sleeps: no signal, no wake-up.

How it fails: when the queue of pending real-time signals is full (RLIMIT_SIGPENDING, counted per
user), the kernel drops the new ones and sends plain SIGIO instead: events were lost, so we warn
once and fall back to trying every socket after each SIGIO, which is busy polling done one signal
at a time. A path that stops short of EAGAIN would leave a connection waiting for a signal that
never comes. Code elsewhere in the process that unblocks or handles the signal would take our
events (or, with the default action, kill the process): the signal goes to this thread only, and
stays blocked while we serve. Back-pressure, descriptor exhaustion and peer errors are handled as
in every readiness model. Linux only (F_SETSIG and si_fd).
"""

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import struct
import sys
import threading

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._readiness import ReadinessLoop, serve_with

MODEL = ModelInfo(
    kind="readiness", runs_in_thread=False,
    name="sigio", family="signal-driven I/O (Stevens' 5th model)", section="—",
    waits_in="sigtimedwait() for a real-time signal per event",
    cost="one queued signal and one system call per event, many stale; a full scan on overflow",
    multi_worker=True)

log = logging.getLogger("iomodels")

# Linux values, for Pythons whose fcntl module lacks them.
F_SETSIG = getattr(fcntl, "F_SETSIG", 10)
F_SETOWN_EX = 15
F_OWNER_TID = 0
# siginfo_t for SIGPOLL-type signals: si_signo, si_errno, si_code, then (aligned) si_band, si_fd.
SIGINFO = struct.Struct("@iiili")
SIGINFO_SIZE = 128
SIGSET_SIZE = 128


def unavailable_reason():
    if not sys.platform.startswith("linux"):
        return "needs Linux (F_SETSIG and si_fd)"
    return None


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class SignalLoop(ReadinessLoop):
    name = "sigio"
    # si_band holds poll() bits: READABLE/WRITABLE apply as they are.
    edge = True

    def __init__(self, *args):
        super().__init__(*args)
        self.signum = signal.SIGRTMIN
        libc = ctypes.CDLL(None, use_errno=True)
        self._sigwaitinfo = libc.sigwaitinfo
        self._sigtimedwait = libc.sigtimedwait
        self._sigset = ctypes.create_string_buffer(SIGSET_SIZE)
        libc.sigemptyset(self._sigset)
        for signum in (self.signum, signal.SIGIO):
            libc.sigaddset(self._sigset, signum)
        self._info = ctypes.create_string_buffer(SIGINFO_SIZE)
        self._timespec = _Timespec()
        self._timespec_ref = ctypes.byref(self._timespec)
        self.overflowed = False
        # Blocked, the signals wait in the queue for sigtimedwait(); unblocked, their default
        # action would kill the process.
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {self.signum, signal.SIGIO})
        # To this thread, not the process: another thread (metrics) does not block the signal.
        self.owner = struct.pack("ii", F_OWNER_TID, threading.get_native_id())

    def watch(self, fd, mask):
        fcntl.fcntl(fd, F_SETOWN_EX, self.owner)
        fcntl.fcntl(fd, F_SETSIG, self.signum)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)

    def rewatch(self, fd, mask):
        pass  # a signal cannot be asked for one direction only; every change is announced

    def unwatch(self, fd, closing=False):
        if not closing:  # close() itself removes the descriptor from the owner's notifications
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)

    def wait(self, timeout):
        stats = self.stats
        stats.wait_calls += 1
        if timeout is None:
            signo = self._sigwaitinfo(self._sigset, self._info)
        else:
            self._timespec.tv_sec = int(timeout)
            self._timespec.tv_nsec = int((timeout % 1) * 1e9)
            signo = self._sigtimedwait(self._sigset, self._info, self._timespec_ref)
        if signo < 0:
            code = ctypes.get_errno()
            # EAGAIN: the timeout. EINTR: a signal some handler caught (not a stop: those are
            # blocked, taken by the relay, which writes the stop pipe, whose signal wakes us).
            if code not in (errno.EAGAIN, errno.EINTR):
                raise OSError(code, os.strerror(code))
            stats.empty_wakeups += 1
            return
        stats.signals += 1
        if signo != self.signum:
            self.overflow()
            return
        _, _, _, band, fd = SIGINFO.unpack_from(self._info)
        conn = self.conns.get(fd)
        if conn is not None:
            stats.events += 1
            self.service(conn, band & self.READABLE, band & self.WRITABLE)
        elif fd == self.listener_fd:
            stats.events += 1
            self.accept()
        else:
            self.next_due = 0.0  # the stop pipe, or a stale signal for a closed descriptor

    def overflow(self) -> None:
        """Plain SIGIO: the real-time queue was full and events were dropped. Try everything."""
        if not self.overflowed:
            log.warning("sigio: real-time signal queue overflowed (RLIMIT_SIGPENDING); "
                        "falling back to scanning every connection after each SIGIO")
            self.overflowed = True
        self.scan()
        self.next_due = 0.0  # the stop pipe's signal may have been among those dropped

    def close_waiter(self):
        for fd in (self.stop.fileno(), self.listener_fd):
            with contextlib.suppress(OSError):
                self.unwatch(fd)
        # Signals still queued (stale ones, for sockets now closed) would kill us once unblocked.
        while signal.sigtimedwait({self.signum, signal.SIGIO}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)


def serve(listener, config, stats, stop, new_session):
    serve_with(SignalLoop, listener, config, stats, stop, new_session)
