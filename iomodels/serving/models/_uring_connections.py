"""The io_uring model's connections: one class per receive mode, sharing how replies leave.

A `Connection` turns a receive's completion into a reply handed to the kernel. Its two strategies
differ only in how they keep a receive armed (the essay in io_uring.py says when each pays):
- `MultishotConnection`: one receive that stays armed and takes a buffer from the shared ring
  only when data arrives; it ends (ENOBUFS, a cancel, EOF) and is armed again;
- `OneshotConnection`: a receive into the connection's own buffer, submitted again after each
  completion.

Sending, the same for both: each reply is a `send_all` whose success is not reported, so a
request costs one completion, its receive's. The binding queues a socket's sends one behind the
other and finishes partial ones itself; we learn nothing when they succeed, so back-pressure
works from what we handed over: once more than `--high-water` bytes went out unconfirmed, reading
pauses and every send is reported (a "fence": its completion confirms it and all before it), until
the confirmed mark comes within `--low-water` of what was handed over.

Each handler runs once per completion, so they are written flat: few calls, locals for what is
used twice.
"""

from __future__ import annotations

import collections
import errno
import mmap
import os
import time

from iomodels.serving import uring
from iomodels.serving.core import EchoSession
from iomodels.serving.models._sweep import kernel_unsent

# A receive that ended with these is no error: we cancelled it (back-pressure), or the provided
# buffers ran out for a moment. It is armed again as soon as reading may go on.
REARM = frozenset({errno.ECANCELED, errno.ENOBUFS})
_MORE = uring.MORE
_NONEMPTY = uring.SOCK_NONEMPTY
PAUSED = -1  # `send_limit` while reading is paused: every send is then a fence


def unsent(conn: "Connection") -> int:
    """Output on its way to the peer, for the idle sweep (_sweep.py): the socket's send queue, plus
    what was handed to the ring and not yet confirmed (confirmations come from fences, which are
    every send while reading is paused, the case where the sweep needs to see the peer read)."""
    return kernel_unsent(conn.fd) + conn.handed - conn.confirmed


class Connection:
    """One connection: its socket, its protocol state, its receive in flight, its sends' ledger."""

    __slots__ = ("proactor", "ring", "stats", "sock", "fd", "session", "receive_op", "high_water",
                 "low_water", "handed", "confirmed", "send_limit", "fences", "quiet_ticks", "started",
                 "unsent_mark", "closed", "on_receive", "on_send_failed", "on_fence")

    def __init__(self, proactor, sock):
        self.proactor = proactor
        self.ring: uring.Ring = proactor.ring
        self.stats = proactor.stats
        self.sock = sock
        self.fd = sock.fileno()
        config = proactor.config
        self.session: EchoSession = proactor.new_session()
        self.receive_op: uring.Completion | None = None
        self.high_water, self.low_water = config.high_water, config.low_water
        self.handed = 0  # bytes handed to the kernel to send, since the start
        self.confirmed = 0  # of those, how many a fence's completion confirmed sent
        self.send_limit = self.high_water  # `handed` above this: pause reading (PAUSED: paused)
        self.fences: collections.deque[int] = collections.deque()  # `handed` at each fence in flight
        self.quiet_ticks = 0
        self.started = time.monotonic()
        self.unsent_mark = 0  # see _sweep.py
        self.closed = False
        # Bound once: every operation carries one of these as its user_data (close() drops them).
        self.on_receive = self.receive_done
        self.on_send_failed = self.send_failed
        self.on_fence = self.fence_done

    # -- what each receive mode provides ------------------------------------------------------

    def arm_receive(self) -> None:
        raise NotImplementedError

    def receive_done(self, completion: uring.Completion) -> None:
        raise NotImplementedError

    def pause_receiving(self) -> None:
        """Stop taking data from this peer (the armed receive, if any, may still complete)."""

    def drop_references(self) -> None:
        """After close: the handlers bound in __init__ make each connection a reference cycle;
        without this its session and buffer would wait for a full garbage collection (hundreds of
        MiB under churn). An operation still in flight keeps what it uses alive by itself."""
        self.on_receive = self.on_send_failed = self.on_fence = self.session = None

    # -- shared: data in, replies out ---------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        return self.send_limit == PAUSED

    def received(self, data: bytes, more_coming: int) -> None:
        """Take data; hand the reply over, unless more is coming at once and can share its send
        (SOCK_NONEMPTY: a 64 KiB message fills 32 buffers, and needs one send)."""
        stats = self.stats
        stats.recv_calls += 1
        stats.bytes_in += len(data)
        self.quiet_ticks = 0
        session = self.session
        if not more_coming and not session.pending():
            self.send(session.reply_to(data))
            return
        session.receive_data(data)
        if not more_coming or session.reading_paused:
            self.flush()

    def flush(self) -> None:
        """Hand over what the session holds back (replies kept for a completion that follows)."""
        session = self.session
        pending = session.pending()
        if pending:
            size = len(pending)
            self.send(bytes(pending))  # the kernel gets an immutable copy
            session.sent(size)

    def send(self, data: bytes) -> None:
        stats = self.stats
        stats.send_calls += 1
        size = len(data)
        stats.bytes_out += size  # counted when handed over: send_all sends it all, or fails
        handed = self.handed + size
        self.handed = handed
        if handed <= self.send_limit:
            self.ring.send_unreported(self.fd, data, self.on_send_failed)
            return
        self.fences.append(handed)
        self.ring.send_reported(self.fd, data, self.on_fence)
        if self.send_limit != PAUSED:
            self.send_limit = PAUSED
            self.pause_receiving()

    def send_failed(self, completion: uring.Completion) -> None:
        if not self.closed:
            res = completion.res
            self.proactor.fail(self, OSError(-res, os.strerror(-res)))

    def fence_done(self, completion: uring.Completion) -> None:
        """A reported send completed: it and every send before it on this socket are done."""
        confirmed = self.fences.popleft()
        if self.closed:
            return
        res = completion.res
        if res < 0:
            self.proactor.fail(self, OSError(-res, os.strerror(-res)))
            return
        self.confirmed = confirmed
        if self.session.eof_received and not self.fences and self.handed == confirmed:
            self.proactor.close(self)  # every reply went out: done
        elif self.send_limit == PAUSED and self.handed - confirmed <= self.low_water:
            self.send_limit = confirmed + self.high_water
            if self.receive_op is None and self.session.wants_read:
                self.arm_receive()

    def receive_ended(self, res: int) -> None:
        """A receive completed without data: end of input, or an error (ours or the peer's)."""
        if res == 0:
            self.stats.recv_calls += 1
            self.flush()
            self.session.receive_eof()
            # An empty reported send: its completion says the replies before it all went out.
            self.fences.append(self.handed)
            self.ring.send_reported(self.fd, b"", self.on_fence)
        elif -res not in REARM:
            self.proactor.fail(self, OSError(-res, os.strerror(-res)))
        elif self.send_limit != PAUSED and self.session.wants_read:
            self.arm_receive()  # ENOBUFS: the buffers in use are back by the time this is submitted


class MultishotConnection(Connection):
    """A receive that stays armed; the kernel picks a provided buffer for each arrival."""

    __slots__ = ()

    def arm_receive(self) -> None:
        self.receive_op = self.ring.recv_multishot(self.fd, self.proactor.buffers, self.on_receive)

    def pause_receiving(self) -> None:
        if self.receive_op is not None:
            self.ring.cancel(self.receive_op)  # the kernel must stop filling buffers for us

    def receive_done(self, completion: uring.Completion) -> None:
        res = completion.res
        flags = completion.flags
        if res > 0 and not self.closed:
            self.received(bytes(completion.result), flags & _NONEMPTY)  # the copy frees the buffer
            if self.send_limit == PAUSED and self.receive_op is not None:
                self.pause_receiving()  # a cancel may race the next pass: cancel again
        # Only the final completion of an operation is the handle that prepare returned.
        if completion is not self.receive_op or flags & _MORE:
            return
        self.receive_op = None
        if self.closed:
            return
        self.flush()  # held back for a completion that will not come now
        if res <= 0:
            self.receive_ended(res)
        elif self.send_limit != PAUSED and self.session.wants_read:
            self.arm_receive()


class OneshotConnection(Connection):
    """A receive into this connection's own buffer, submitted again after each completion."""

    __slots__ = ("buffer",)

    def __init__(self, proactor, sock):
        super().__init__(proactor, sock)
        # Anonymous memory: a receive buffer costs resident pages only once data lands in it.
        self.buffer = mmap.mmap(-1, proactor.config.recv_size)

    def arm_receive(self) -> None:
        self.receive_op = self.ring.recv(self.fd, self.buffer, 0, self.on_receive)

    def receive_done(self, completion: uring.Completion) -> None:
        self.receive_op = None
        if self.closed:
            return  # only now may the buffer go: the kernel is done with it
        res = completion.res
        if res <= 0:
            self.receive_ended(res)
            return
        self.received(self.buffer[:res], 0)
        if self.send_limit != PAUSED:  # (a pause holds the receive back until a fence resumes it)
            self.receive_op = self.ring.recv(self.fd, self.buffer, 0, self.on_receive)

    def drop_references(self) -> None:
        super().drop_references()
        self.buffer = None
