"""`--idle-timeout` and `--max-connection-age` without a timer per connection or per request.

Re-arming a timer on every request costs a heap operation per request; instead a connection only
zeroes a counter when data arrives (`quiet_ticks = 0`), and one periodic sweep, run `STEPS` times
per limit, counts up every connection's ticks. A connection is idle once it stayed quiet for more
sweeps than fit in the timeout, so it is closed after between `idle_timeout` and
`idle_timeout * (1 + 1/STEPS)` of silence: never early, a little late at worst.
Used by the event loops (asyncio, uvloop) and io_uring: anything that owns its own timers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from iomodels.serving.config import ServerConfig
from iomodels.serving.stats import Stats

# Ten sweeps per limit: a connection is closed at most 10 % late (the reliability criterion).
STEPS = 10


class Swept(Protocol):
    quiet_ticks: int
    started: float  # time.monotonic() when accepted


class Sweep:
    def __init__(self, config: ServerConfig, stats: Stats):
        self.stats = stats
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
            if self.idle_ticks is not None and conn.quiet_ticks > self.idle_ticks:
                self.stats.idle_closed += 1
                yield conn
            elif self.max_age is not None and now - conn.started >= self.max_age:
                self.stats.aged_closed += 1
                yield conn
