"""`--idle-timeout` and `--max-connection-age` without a timer per connection or per request.

Re-arming a timer on every request costs a heap operation per request; instead a connection only
zeroes a counter when data arrives (`quiet_ticks = 0`), and one periodic sweep, run `STEPS` times
per limit, counts up every connection's ticks. A connection is idle once it stayed quiet for more
sweeps than fit in the timeout, so it is closed after between `idle_timeout` and
`idle_timeout * (1 + 1/STEPS)` of silence: never early, a little late at worst.
Used by the readiness loops, the event loops (asyncio, uvloop) and io_uring.

Idle means the peer neither sent nor read. A client that uploads while it reads slowly is paused
by back-pressure: nothing arrives from it, by our doing, while it reads all along. Its reading
shows only as output leaving, and mostly in the kernel: a send buffer grown to megabytes drains
for many seconds before the socket is writable again, so a model's own sends (or an event loop's
buffer) can stand still while the peer reads. So the sweep asks, through the model's
`unsent(conn)` (the kernel's send queue, SIOCOUTQ, plus what the model still holds), how much
output is on its way at the first sweep of a quiet stretch, and again when the stretch reaches the
timeout: less means the peer read, and the connection starts a new stretch. A peer that reads
nothing is closed on time; one that stops reading, within two timeouts of its last read. That
costs two ioctl() per connection per quiet stretch, none per request.
"""

from __future__ import annotations

import fcntl
import math
import struct
import termios
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from iomodels.serving.config import ServerConfig
from iomodels.serving.stats import Stats

# Ten sweeps per limit: a connection is closed at most 10 % late (the reliability criterion).
STEPS = 10


class Swept(Protocol):
    quiet_ticks: int
    started: float  # time.monotonic() when accepted
    unsent_mark: int  # output on its way to the peer at the start of the quiet stretch


def kernel_unsent(fd: int) -> int:
    """Bytes in the socket's send queue, not yet acknowledged by the peer (SIOCOUTQ, tcp(7))."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def unsent_on_fd(conn) -> int:
    """`unsent` for a connection with an `fd` and an EchoSession that holds its pending output."""
    return kernel_unsent(conn.fd) + conn.session.pending_size


class Sweep:
    def __init__(self, config: ServerConfig, stats: Stats, unsent: Callable[[Swept], int]):
        self.stats = stats
        self.unsent = unsent
        self.idle_timeout = config.idle_timeout
        self.max_age = config.max_connection_age
        limits = [limit for limit in (self.idle_timeout, self.max_age) if limit]
        # Seconds between sweeps; None when there is nothing to sweep for.
        self.interval = min(limits) / STEPS if limits else None
        self.idle_ticks = math.ceil(self.idle_timeout / self.interval) if self.idle_timeout else None

    def expired(self, connections: Iterable[Swept]) -> Iterator[Swept]:
        """Count one sweep; yield (and count) the connections to close now."""
        now = time.monotonic()
        for conn in list(connections):
            conn.quiet_ticks += 1
            if self.idle_ticks is not None and conn.quiet_ticks == 1:
                conn.unsent_mark = self._unsent(conn)
            if self.idle_ticks is not None and conn.quiet_ticks > self.idle_ticks:
                if conn.unsent_mark and self._unsent(conn) < conn.unsent_mark:
                    conn.quiet_ticks = 0  # the peer read: a paused reader is not idle
                    continue
                self.stats.idle_closed += 1
                yield conn
            elif self.max_age is not None and now - conn.started >= self.max_age:
                self.stats.aged_closed += 1
                yield conn

    def _unsent(self, conn: Swept) -> int:
        try:
            return self.unsent(conn)
        except (OSError, AttributeError):  # being closed: nothing more will reach the peer
            return 0
