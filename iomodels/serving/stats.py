"""In-process counters every model bumps: what the lab reads to say who waited where.

Plain integer attributes, because they are bumped in the hot loop of every model: `stats.recv_calls
+= 1` costs one attribute store. Threads share one `Stats` (an increment may rarely be lost when two
threads race on it: these are measurements, not accounting). A forked child keeps its own copy and
adds it to the parent's `SharedCounters` when it exits (see models/forking.py); so does each
worker process of `--workers N` (see workers.py).
"""

from __future__ import annotations

import mmap
import multiprocessing
import struct
import time

# name -> what it counts. The order is the order of the JSON and Prometheus output.
COUNTERS = {
    "accepts": "connections accepted",
    "accept_errors": "accept() calls that failed (EMFILE, ECONNABORTED...)",
    "accept_backoffs": "times accepting was paused because a resource ran out (EMFILE...)",
    "rejected_max_connections": "connections closed at once because --max-connections was reached",
    "rejected_fd_too_high": "connections refused because their fd does not fit select() (>= FD_SETSIZE)",
    "rejected_no_thread": "connections reset because no thread could be started for them (threaded)",
    "connections_closed": "connections closed, for any reason",
    "idle_closed": "connections closed by --idle-timeout",
    "aged_closed": "connections closed by --max-connection-age",
    "peer_errors": "connections ended by a peer error (ECONNRESET, EPIPE...)",
    "internal_errors": "connections aborted by a bug in our code (logged with a traceback)",
    "bytes_in": "bytes received",
    "bytes_out": "bytes sent",
    "recv_calls": "recv() calls",
    "recv_eagain": "recv() calls that found no data (EAGAIN)",
    "send_calls": "send() calls",
    "send_eagain": "send() calls that found the send buffer full (EAGAIN)",
    "send_partial": "send() calls that sent only part of what was asked",
    "wait_calls": "calls that wait for readiness or completion (select, poll, epoll_wait, sigwaitinfo...)",
    "empty_wakeups": "waits that returned with nothing to do (timeouts)",
    "events": "readiness events or completions handled",
    "signals": "signals received (sigio)",
    "loop_iterations": "turns of the model's main loop",
    "submits": "io_uring_enter calls that submitted work",
    "completions": "io_uring completions reaped",
    "threads_started": "threads started to serve connections",
    "processes_started": "processes forked to serve connections",
}


class Stats:
    __slots__ = tuple(COUNTERS) + ("connections_open", "started_at", "children")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.connections_open = 0
        self.started_at = time.time()
        # Counters of child processes (forking children, --workers), added to every snapshot.
        self.children: SharedCounters | None = None

    def snapshot(self) -> dict:
        values = {name: getattr(self, name) for name in COUNTERS}
        values["connections_open"] = self.connections_open
        if self.children is not None:
            for name, count in self.children.read().items():
                values[name] += count
        values["uptime_s"] = round(time.time() - self.started_at, 3)
        return values

    def add(self, counts: dict) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + counts.get(name, 0))


class SharedCounters:
    """Counters in anonymous shared memory, one slot per process, summed when read.

    A forked child `add`s its counters to a slot when it finishes (forking model); a worker
    process `store`s its running totals in its own slot now and then (`--workers N`).
    """

    FIELDS = tuple(COUNTERS) + ("connections_open",)
    _FORMAT = f"{len(FIELDS)}q"
    _SIZE = struct.calcsize(_FORMAT)

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, self._SIZE * slots)
        # Children that finish together (a SIGTERM, an age limit) would lose each other's counts
        # in a read-modify-write: a semaphore in shared memory, inherited across fork, serialises them.
        self._lock = multiprocessing.Lock()

    def add(self, stats: Stats, slot: int = 0) -> None:
        with self._lock:
            current = struct.unpack_from(self._FORMAT, self._memory, slot * self._SIZE)
            totals = [old + getattr(stats, name) for old, name in zip(current, COUNTERS)]
            struct.pack_into(self._FORMAT, self._memory, slot * self._SIZE, *totals, current[-1])

    def store(self, stats: Stats, slot: int) -> None:
        struct.pack_into(self._FORMAT, self._memory, slot * self._SIZE,
                         *(getattr(stats, name) for name in self.FIELDS))

    def take(self, slot: int) -> dict:
        """Read one slot and zero it (a worker died: its counts move to the parent)."""
        values = dict(zip(self.FIELDS, struct.unpack_from(self._FORMAT, self._memory, slot * self._SIZE)))
        struct.pack_into(self._FORMAT, self._memory, slot * self._SIZE, *([0] * len(self.FIELDS)))
        return values

    def read(self) -> dict:
        totals = dict.fromkeys(self.FIELDS, 0)
        for slot in range(self.slots):
            for name, value in zip(self.FIELDS, struct.unpack_from(self._FORMAT, self._memory, slot * self._SIZE)):
                totals[name] += value
        return totals
