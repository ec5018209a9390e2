"""The Python cost per message of the load generator's hot path, without network or event loop.

    .venv/bin/python benchmarks/bench_hotpath.py

One `Connection` is fed its own correct replies, `depth` at a time, as one receive each (the case
pipelining produces), and its writes go nowhere (os.write is replaced by a function returning the
length), so what is timed is only our Python: verification, counting, timing, refilling. Process
CPU time, best of 7 runs. What a real run adds per message (the Poller's read, the kernel's loopback TCP) is in
benchmarks/bench_vs_c.py's figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import iomodels.bench.connection as connection_module  # noqa: E402
from iomodels.bench.connection import Connection, Tally  # noqa: E402
from iomodels.bench.payload import Messages, Size, Stream  # noqa: E402

SIZE = 64
FIRST = 3


class _Socket:
    def fileno(self) -> int:
        return -1


def ns_per_message(depth: int, messages: int = 400_000) -> float:
    tally = Tally()
    stream = Stream(Messages(Size(SIZE, SIZE)), depth * SIZE)
    conn = Connection(tally, stream, FIRST, refill=True)
    conn.attached(_Socket(), poller=None)  # every write is taken whole: nothing is ever pending
    conn.start(depth)
    # The stream repeats every stream.count messages, so these windows are every reply batch to come.
    replies = [stream.window(stream.expected, stream.offset(FIRST + k * depth), SIZE * depth)
               for k in range(stream.count)]
    start = time.process_time()
    for k in range(messages // depth):
        conn.data_received(replies[k % stream.count])
        if len(tally.latencies) > 50_000 or len(tally.batch_counts) > 50_000:
            tally.flush(True)
    elapsed = time.process_time() - start
    assert tally.new_mismatches == 0 and tally.protocol_errors == 0
    return elapsed / messages * 1e9


def main() -> int:
    connection_module.os_write = lambda fd, data: len(data)
    for depth in (1, 8, 32):
        best = min(ns_per_message(depth) for _ in range(7))
        print(f"depth {depth:>2}: {best:6.0f} ns of Python per message ({SIZE} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
