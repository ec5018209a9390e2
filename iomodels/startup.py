"""The process entry point of `iomodels serve`: one start-up for one process and for `--workers`.

1. validate the config, check the model can run here (io_uring may be forbidden);
2. bind and listen (one process), or hold the port and start the workers (`--workers N`);
3. install the signal handlers, start the metrics endpoint, then print the ready line
   `listening on HOST:PORT (model NAME)` and flush it: tools and tests wait for that line
   (`READY_LINE` here prints it; iomodels/launcher.py is the one place that parses it);
4. run the model's `serve(listener, config, stats, stop)` (or supervise the workers) until it
   returns; write the stats file; return the exit status.

On SIGINT/SIGTERM `Stop.request()` stops accepting and lets open connections drain (toolkit.py).
SIGUSR1 rewrites the `--stats-file`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from iomodels import procstats
from iomodels.addresses import format_address
from iomodels.serving import metrics, models, toolkit, workers
from iomodels.serving.config import ConfigError, ServerConfig
from iomodels.serving.stats import Stats

log = logging.getLogger("iomodels")

# The ready line: printed once, flushed, when the server accepts connections. ADDRESS is HOST:PORT,
# or [HOST]:PORT for IPv6.
READY_LINE = "listening on {address} (model {model})"


def run(config: ServerConfig) -> int:
    """Serve until stopped; return the exit status. Raises ConfigError for user errors."""
    model = models.load(config.model)
    reason = models.unavailable_reason(config.model)
    if reason:
        raise ConfigError(f"model {config.model} cannot run here: {reason}")
    if config.workers > 1 and not model.MODEL.multi_worker:
        raise ConfigError(f"--workers {config.workers}: model {config.model} runs as a single process; "
                          "only event-driven models can share a port between worker processes")
    configure_logging(config.log_level)
    stats = Stats()
    stop = toolkit.Stop(config.drain_timeout)
    if config.workers > 1:
        pool = workers.WorkerPool(model, config, stats, stop)
        sockname, serve, close = pool.start(), pool.supervise, pool.close
    else:
        listener = toolkit.open_listener(config)
        stop.watch_listener(listener)
        sockname, close = listener.getsockname(), listener.close

        def serve() -> int:
            model.serve(listener, config, stats, stop)
            return 0
    handle_signals(stop, stats, config)
    if config.metrics_port is not None:
        metrics.serve_metrics(config.host, config.metrics_port, stats)
    print(READY_LINE.format(address=format_address(sockname[0], sockname[1]), model=config.model),
          flush=True)
    try:
        status = serve()
    finally:
        close()
        stop.close()
        if config.stats_file:
            write_stats_file(config.stats_file, stats, config.model)
    log.debug("stopped: %s", stats.snapshot())
    return status


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")


def write_stats_file(path: str, stats: Stats, model: str) -> None:
    # CPU and context switches, dead threads and reaped children included.
    snapshot = {"model": model, "pid": os.getpid(), **stats.snapshot(), **procstats.own_usage()}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(snapshot, f, indent=1)
    os.replace(tmp, path)  # readers never see half a file


def handle_signals(stop: toolkit.Stop, stats: Stats, config: ServerConfig) -> None:
    def on_stop(signum, frame):
        log.info("%s: stopping (draining for up to %.1f s)", signal.Signals(signum).name, stop.drain_timeout)
        stop.request()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)

    def on_stats_request(signum, frame):
        try:
            write_stats_file(config.stats_file, stats, config.model)
        except OSError as exc:  # e.g. EMFILE: the server is out of descriptors; it must keep serving
            log.warning("cannot write %s: %s", config.stats_file, exc.strerror)

    if config.stats_file:
        signal.signal(signal.SIGUSR1, on_stats_request)
