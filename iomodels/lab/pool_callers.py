"""Callers of `iomodels.client.pool.ConnectionPool`, run in a process of their own.

The connection-pool experiment asks how long callers wait for a connection when they outnumber
it. Run in the lab's own process, the answer would include the lab's other threads (the progress
display redraws under the GIL ten times a second): so `crowd` runs in a fresh interpreter, with
nothing else in it but the callers and the pool, and sends back the figures.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import statistics
import sys
import threading
import time

from iomodels.client.pool import ConnectionPool
from iomodels.lab.measuring import percentiles

PAYLOAD = b"x" * 64
# A caller handed a connection still needs the GIL to use it; by default a running thread keeps
# it up to 5 ms, which would be the interpreter's wait, not the pool's. Hand the GIL on sooner.
SWITCH_INTERVAL = 0.0002


def crowd(host: str, port: int, size: int, callers: int, window: float) -> dict:
    """`callers` threads send requests through one pool of `size` for `window` s."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    latencies: list[list[float]] = [[] for _ in range(callers)]
    errors = [0] * callers
    with ConnectionPool(host, port, max_size=size, acquire_timeout=30.0) as pool:
        end = time.monotonic() + window

        def caller(index: int) -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    ok = pool.request(PAYLOAD) == PAYLOAD.upper()
                except OSError:
                    ok = False
                if ok:
                    latencies[index].append((time.perf_counter() - started) * 1e6)
                else:
                    errors[index] += 1

        threads = [threading.Thread(target=caller, args=(i,), name=f"lab-caller-{i}") for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        waits = [seconds * 1e6 for seconds in pool.stats.wait_times]
        stats = pool.stats
    everything = [value for samples in latencies for value in samples]
    # Fairness, caller by caller: a starved caller (what barging does) has a median request time
    # far above everyone else's, or no request at all (counted as waiting the whole window).
    per_caller = [statistics.median(samples) if samples else window * 1e6 for samples in latencies]
    return {"slowest_caller_p50_us": round(max(per_caller), 1),
            "fewest_requests_by_a_caller": min(map(len, latencies)),
            "most_requests_by_a_caller": max(map(len, latencies)),"requests": len(everything), "requests_per_s": round(len(everything) / window, 1),
            "errors": sum(errors), **{f"latency_{key}_us": value for key, value in percentiles(everything).items()},
            **{f"wait_{key}_us": value for key, value in percentiles(waits).items()},
            "waited_percent": round(100 * stats.waits / max(len(waits), 1), 2),
            "connections_created": stats.created, "handoffs": stats.handoffs}


def runner() -> concurrent.futures.ProcessPoolExecutor:
    """One fresh interpreter for the callers (spawned: nothing of the lab's threads in it)."""
    return concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
