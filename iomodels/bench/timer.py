"""A wake-up at a given CLOCK_MONOTONIC nanosecond, finer than the event loop's own timers.

libuv (and so uvloop) keeps time in whole milliseconds and sleeps in `epoll_wait(ms)`: an open-loop
request due at t would leave up to a millisecond late, and since its latency counts from t, every
measurement would carry up to 1 ms of the client's own lateness. A timerfd armed for the absolute
instant makes the kernel wake the loop with its high-resolution timers instead; the loop just sees
a readable descriptor. Timer slack (50 us by default for ordinary threads) is lowered to 1 us for
the same reason. Python 3.11 has no `os.timerfd_create` (3.13 does), hence ctypes. Where that is
unavailable, millisecond timers it is: the report shows the resulting send lag either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import time

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.timerfd_create, libc.timerfd_settime  # noqa: B018 (present on Linux only)
        return libc
    except (OSError, AttributeError, TypeError):
        return None


class WakeUp:
    """`at(ns, callback)`: call `callback()` once, as soon as possible after `ns` (perf_counter_ns)."""

    def __init__(self, loop):
        self.loop = loop
        self.callback = None
        self.handle = None
        self.fd = -1
        libc = _libc()
        if libc is not None and time.get_clock_info("perf_counter").implementation.endswith("(CLOCK_MONOTONIC)"):
            fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if fd >= 0:
                self.libc, self.fd = libc, fd
                libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
                loop.add_reader(fd, self._fired)

    @property
    def precise(self) -> bool:
        return self.fd >= 0

    def at(self, ns: int, callback) -> None:
        self.callback = callback
        if self.fd < 0:  # millisecond timers, rounded up: rounding down would spin the loop
            delay = math.ceil((ns - time.perf_counter_ns()) / 1e6) / 1e3
            self.handle = self.loop.call_later(max(0.0, delay), self._fire)
            return
        ns = max(ns, 1)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(ns // 10**9, ns % 10**9))
        if self.libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        self._fire()

    def _fire(self) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
