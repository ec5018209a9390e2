"""The one door to io_uring: the few operations the io_uring model uses, over `uring_api`.

No other module imports `uring_api` (pinned to 0.1.0rc5: a pre-release whose API may move), so a
change there is a change here. What we rely on, from its documentation:
- `prepare_*` only fills a submission queue entry (SQE); `wait()` publishes everything prepared
  with one `io_uring_enter`, then reaps completions (CQEs), entering the kernel again only when
  none is ready. A full SQ is flushed by `prepare` itself: nothing prepared is ever dropped.
  `stats()` counts those enters.
- every prepared operation keeps its buffer (and its `user_data`) alive until its completion
  has been delivered, so a buffer handed to the kernel cannot be freed under it;
- a multishot operation delivers intermediate completions (flag MORE) as new objects and its
  final one as the handle `prepare` returned;
- a `send_all` finishes a partial send itself (the next leg is submitted from C, no Python runs),
  and while one is in flight on a socket, a later send_all, shutdown or close on the same fd waits
  in a per-fd queue inside the binding: sends on one socket leave in order, one at a time, and a
  close queued behind them runs after the last. `skip_success` on it: only a failure is delivered.
- `prepare(list)` prepares the operations in the list's order, one call for all of them.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable

import uring_api

Completion = uring_api.Completion
BufGroup = uring_api.BufGroup

# Set on a multishot completion when more will follow from the same operation.
MORE = uring_api.IORING_CQE_F_MORE
# Set on a receive's completion when the socket already holds more data.
SOCK_NONEMPTY = uring_api.IORING_CQE_F_SOCK_NONEMPTY
# A peer that is gone makes a send fail with EPIPE, never raise SIGPIPE.
SEND_FLAGS = socket.MSG_NOSIGNAL
POLLIN = 0x001
_NO_WAIT = 1e-9  # the shortest timeout that enters the kernel (0 would only peek)

# One submitter thread that also reaps: the kernel may skip locking, and runs completion work
# (DEFER_TASKRUN) only when we ask for completions, instead of interrupting us to run it.
_FAST_FLAGS = uring_api.IORING_SETUP_SINGLE_ISSUER | uring_api.IORING_SETUP_DEFER_TASKRUN


def _disabled_sysctl() -> str | None:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            value = f.read().strip()
    except OSError:
        return None
    return {"1": "restricted to the io_uring_group by kernel.io_uring_disabled=1",
            "2": "disabled by kernel.io_uring_disabled=2"}.get(value)


@functools.cache
def unavailable_reason() -> str | None:
    """Why this process cannot use io_uring (None if it can): one line for the user."""
    if not uring_api.is_available():
        return (f"io_uring is {_disabled_sysctl()}" if _disabled_sysctl() else
                "io_uring_setup() is refused (an old kernel, or a seccomp policy such as a "
                "container's default profile)")
    try:
        Ring(8).close()
    except OSError as exc:
        return f"io_uring_setup() failed: {exc.strerror}"
    return None


def _closed(completion: Completion) -> None:
    """A close failed: the descriptor was ours and open, so this is a bug."""
    raise OSError(-completion.res, "close() of a connection failed")


class Ring:
    """A ring whose completions each carry a callable (`user_data`) to hand the completion to.

    `recv(fd, buffer, 0, on_done)` is the C method itself, without a Python frame in between
    (the kernel copies the data into `buffer`, then completes with the count).
    """

    recv: Callable[[int, object, int, Callable], Completion]

    def __init__(self, entries: int):
        flags = _FAST_FLAGS if uring_api.probe(flags=_FAST_FLAGS) else 0
        # Twice as many completion slots as submissions: a multishot operation can post many.
        self._ring = uring_api.Ring(entries=entries, flags=flags, cq_entries=2 * entries)
        self.recv = self._ring.prepare_recv
        self._construct_send_all = self._ring.construct_send_all
        self._prepare = self._ring.prepare
        self._sends: list[Completion] = []  # unreported sends, prepared together before the wait

    def send_unreported(self, fd: int, data: bytes, on_failure: Callable) -> None:
        """Send all of `data` (after the sends before it on `fd`); its completion is delivered
        to `on_failure` only if it fails: a successful one costs no Python at all.

        Prepared with the turn's other unreported sends in one call (each `prepare` takes the
        binding's locks; a list takes them once), before the next wait or the next operation
        that must queue behind them on a socket (a reported send, a close)."""
        operation = self._construct_send_all(fd, data, SEND_FLAGS, on_failure)
        operation.skip_success = True
        self._sends.append(operation)

    def _prepare_sends(self) -> None:
        if self._sends:
            self._prepare(self._sends)
            self._sends = []

    def send_reported(self, fd: int, data: bytes, on_done: Callable) -> Completion:
        """Send all of `data` (after the sends before it on `fd`); complete once all of it went
        (the byte count), or with the error that stopped it."""
        self._prepare_sends()
        return self._ring.prepare_send_all(fd, data, SEND_FLAGS, on_done)

    def close_after_sends(self, fd: int) -> None:
        """Close `fd` once the sends queued on it are done (their bytes then reach the peer
        before the FIN). The number stays ours until then: nothing queued can reach a socket
        that reuses it."""
        # (Not prepare_close_nowait: a wait with no reported operation pending does not publish
        # it. A skip_success one counts as pending until it completes.)
        operation = self._ring.construct_close(fd, _closed)
        operation.skip_success = True
        self._prepare_sends()
        self._prepare(operation)

    def accept(self, fd: int, multishot: bool, on_done: Callable) -> Completion:
        if multishot:
            return self._ring.prepare_accept_multishot(fd, socket.SOCK_CLOEXEC, on_done)
        return self._ring.prepare_accept(fd, socket.SOCK_CLOEXEC, on_done)

    def buffer_group(self, size: int, count: int) -> BufGroup:
        return self._ring.create_buf_group(size, count)

    def recv_multishot(self, fd: int, group: BufGroup, on_done: Callable) -> Completion:
        """Receive until cancelled, each time into a buffer the kernel picks from `group`."""
        return self._ring.prepare_recv_multishot(fd, group, 0, on_done)

    def poll_in(self, fd: int, on_done: Callable) -> Completion:
        """Complete once `fd` is readable: how a pipe can wake the wait."""
        return self._ring.prepare_poll(fd, POLLIN, on_done)

    def cancel(self, operation: Completion) -> None:
        """Ask the kernel to end `operation`; it still completes (with -ECANCELED if not done)."""
        self._ring.prepare_cancel_nowait(operation)

    def submit(self) -> None:
        """Publish what is prepared now (no system call when nothing is)."""
        self._prepare_sends()
        self._ring.submit()

    def submit_and_wait(self, timeout: float | None) -> list[Completion]:
        """Publish what is prepared and wait up to `timeout` s (None: no limit) for completions.

        A signal interrupting the wait returns no completions (none of the server's own: those are
        blocked in every thread, serving/signals.py).
        A timeout of 0 still enters the kernel: with DEFER_TASKRUN, completions are only posted
        inside io_uring_enter, and the binding's wait(0) only peeks at the queue.
        """
        self._prepare_sends()
        try:
            return self._ring.wait(timeout or _NO_WAIT if timeout is not None else None)
        except InterruptedError:
            return []

    def submit_calls(self) -> int:
        """io_uring_enter calls that submitted work so far (a wait finding no completion ready
        enters again to sleep: that one is not counted here)."""
        counts = self._ring.stats()
        return (counts["submit_main_events"] + counts["submit_sq_full_events"]
                + counts["submit_next_events"] + counts["submit_worker_events"])

    def pending(self) -> int:
        """Operations handed to the kernel whose completion has not been delivered yet."""
        self._prepare_sends()
        return self._ring.pending_count()

    def close(self) -> None:
        self._ring.close()
