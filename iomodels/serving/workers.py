"""`--workers N`: N processes serve one port, each running the model's own loop; a parent supervises.

Each worker opens its own listening socket on the same port with SO_REUSEPORT, and the kernel
spreads new connections over them by a hash of the connection's addresses: no shared accept queue,
no thundering herd, no lock. That is how nginx (`reuseport`) and many Go and Rust servers use
several cores with a single-threaded event loop each. The parent holds the port with a bound but
never listening socket (so `--port 0` is resolved once, and a restarted worker finds the same port),
restarts a worker that dies, forwards SIGTERM, and adds up the workers' counters, which each worker
publishes in its slot of shared memory twice a second.

On a machine with 2 cores, as ours, one core is needed by the load generator: N > 1 shows the
mechanism, not a speed-up. Scaling needs spare cores for the workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

from iomodels.serving import signals, toolkit
from iomodels.serving.config import ConfigError, ServerConfig
from iomodels.serving.stats import SharedCounters, Stats

PUBLISH_INTERVAL = 0.5
# A worker that keeps dying is a bug, not bad luck: stop restarting it.
MAX_RESTARTS, RESTART_WINDOW = 5, 10.0
_PR_SET_PDEATHSIG = 1


class WorkerPool:
    """The parent's side: hold the port, start the workers, restart the dead, add up their counters."""

    def __init__(self, model, config: ServerConfig, stats: Stats, stop: toolkit.Stop):
        self.model, self.stats, self.stop = model, stats, stop
        self.anchor = toolkit.open_listener(config, listen=False)
        self.config = config.replace(port=self.anchor.getsockname()[1])
        self.counters = stats.children = SharedCounters(config.workers)
        self.pids: dict[int, int] = {}  # pid -> slot
        self._ready_read, self._ready_write = os.pipe()

    def start(self) -> tuple[str, int]:
        """Start every worker and wait until each listens; return the address they share."""
        for slot in range(self.config.workers):
            self._start(slot)
        ready = _await_ready(self._ready_read, self.config.workers)
        os.close(self._ready_read)
        if not ready:
            toolkit.stop_processes(self.pids, time.monotonic() + 1.0)
            self.close()
            raise ConfigError("the worker processes did not start listening; see the log above")
        toolkit.log.info("%d workers share the port with SO_REUSEPORT", self.config.workers)
        return self.anchor.getsockname()[:2]

    def supervise(self) -> int:
        """Restart workers that die until a stop is requested; then stop them all. Exit status."""
        status = 0
        restarts: list[float] = []
        try:
            while not self.stop.wait(0.2):
                for pid, slot in _reap(self.pids):
                    self.stats.add(self.counters.take(slot))  # keep what the dead worker counted
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
                    if len(restarts) > MAX_RESTARTS:
                        toolkit.log.error("workers keep dying (%d restarts in %.0f s): stopping",
                                          len(restarts), RESTART_WINDOW)
                        status = 1
                        self.stop.request()
                        break
                    toolkit.log.warning("worker %d (slot %d) died; starting a new one", pid, slot)
                    self._start(slot)
        finally:
            toolkit.stop_processes(self.pids, self.stop.finish_by())
        return status

    def close(self) -> None:
        if self._ready_write is not None:
            os.close(self._ready_write)
            self._ready_write = None
        self.anchor.close()

    def _start(self, slot: int) -> None:
        self.pids[_start_worker(self.model, self.config, slot, self.counters, self._ready_write)] = slot


def _start_worker(model, config: ServerConfig, slot: int, counters: SharedCounters, ready_write: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        status = _run_worker(model, config, slot, counters, ready_write)
    except BaseException:
        toolkit.log.exception("worker %d failed", os.getpid())
    finally:
        os._exit(status)


def _run_worker(model, config: ServerConfig, slot: int, counters: SharedCounters, ready_write: int) -> int:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    stats = Stats()
    stop = toolkit.Stop(config.drain_timeout)
    # fork() copies no thread, so none of the supervisor's relay (a worker restarted after it
    # started has its mask, the signals blocked): this process takes its stops with a relay of its
    # own; counters and SIGHUP are the supervisor's to answer.
    for signum in (signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    relay = signals.SignalRelay({signal.SIGINT: stop.request, signal.SIGTERM: stop.request})
    listener = toolkit.open_listener(config)
    stop.watch_listener(listener)
    finished = threading.Event()

    def publish():
        while not finished.wait(PUBLISH_INTERVAL):
            counters.store(stats, slot)

    toolkit.start_thread(publish, name="publish-stats")
    os.write(ready_write, b"r")
    try:
        model.serve(listener, config, stats, stop, toolkit.session_factory(config))
    finally:
        finished.set()
        counters.store(stats, slot)
        listener.close()
        relay.close()
    return 0


def _await_ready(ready_read: int, count: int, timeout: float = 15.0) -> bool:
    import select
    deadline = time.monotonic() + timeout
    received = 0
    while received < count and time.monotonic() < deadline:
        if select.select([ready_read], [], [], 0.1)[0]:
            received += len(os.read(ready_read, count - received))
    return received >= count


def _reap(pids: dict[int, int]):
    """Yield (pid, slot) of each worker that has exited, forgetting it."""
    for pid in list(pids):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        yield pid, pids.pop(pid)
