"""The load generator: drive any uppercase-echo server, check every byte, measure honestly.

- Closed loop (default): C connections, each keeping `pipeline` messages in flight; the server's
  speed sets the pace. Open loop (`rate`): requests leave on a fixed timetable and are timed from
  when they *should* have left, so a stall cannot hide (coordinated omission).
- Every reply is checked byte for byte against the uppercase of what its connection sent, in
  order, with payloads built to catch servers that uppercase too little or too much.
- Idle connections held silent, spread over loopback source addresses when one is not enough;
  connect-per-request as the no-pool baseline; several worker processes with exactly merged
  HdrHistograms; CPU of the bench itself and of the server, so the bench is never a hidden
  bottleneck.

`run(host, port, ...) -> Result` is the API (the lab uses it); `iomodels bench` is its command line.
Modules: runner (orchestration), worker (one process), connection (the protocol and the open-loop
schedule), timer (sub-millisecond wake-ups), oneshot (connect per request), idle (limits, source
addresses, idle connections), payload (messages, and the Stream a connection's traffic is a window
into), histogram, server_watch, result, report, export (--hdr-log, --csv, the JSON's `about`),
cli, errors. For Locust: locustfile (the user class, `iomodels locustfile` prints its path) over
blocking (the protocol on a plain blocking socket); neither imports uvloop or the event-loop side.
"""

from iomodels.bench.errors import BenchError, UsageError

__all__ = ["BenchError", "Result", "UsageError", "run"]


def __getattr__(name: str):
    # Imported on first use: `iomodels serve` builds the bench's parser but should not pay for
    # numpy, uvloop and hdrh at every start.
    if name == "run":
        from iomodels.bench.runner import run
        return run
    if name == "Result":
        from iomodels.bench.result import Result
        return Result
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
