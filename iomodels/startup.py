"""The process entry point of `iomodels serve`: one start-up for one process and for `--workers`.

1. validate the config, check the model can run here (io_uring may be forbidden);
2. bind and listen (one process), or hold the port and start the workers (`--workers N`);
3. install the signal handlers, start the metrics endpoint, then print the ready line
   `listening on HOST:PORT (model NAME)` and flush it: tools and tests wait for that line
   (`READY_LINE` here prints it; iomodels/launcher.py is the one place that parses it);
4. run the model's `serve(listener, config, stats, stop)` (or supervise the workers) until it
   returns; write the stats file; return the exit status.

Signals (the handlers only take note; serving/signals.py's relay thread does the work):
- SIGINT/SIGTERM: `Stop.request()` stops accepting and lets open connections drain (toolkit.py);
  a second one during the drain stops at once (one log line, exit status 128 + the signal);
- SIGUSR1: rewrites the `--stats-file` (without one: logged and ignored);
- SIGHUP: logged and ignored (there is no configuration to reload; the server keeps serving).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys

import psutil

from iomodels import procstats
from iomodels.serving import metrics, models, signals, toolkit, workers
from iomodels.serving.config import ConfigError, ServerConfig
from iomodels.serving.stats import Stats

log = logging.getLogger("iomodels")

# The ready line: printed once, flushed, when the server accepts connections.
READY_LINE = "listening on {host}:{port} (model {model})"


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
    relay = handle_signals(stop, stats, config)
    if config.metrics_port is not None:
        metrics.serve_metrics(config.host, config.metrics_port, stats)
    print(READY_LINE.format(host=sockname[0], port=sockname[1], model=config.model), flush=True)
    try:
        status = serve()
    finally:
        close()
        relay.close()
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


def handle_signals(stop: toolkit.Stop, stats: Stats, config: ServerConfig) -> signals.SignalRelay:
    """The handlers only take note (serving/signals.py); the relay thread does the work."""
    def stop_action(signum: int):
        name = signal.Signals(signum).name

        def on_stop():
            if not stop.requested:
                log.info("%s: stopping (draining for up to %.1f s)", name, stop.drain_timeout)
                stop.request()
                return
            log.warning("%s again while draining: stopping at once, %d connections cut, exit status %d",
                        name, stats.connections_open, 128 + signum)
            if config.stats_file:
                with contextlib.suppress(OSError):
                    write_stats_file(config.stats_file, stats, config.model)
            for child in psutil.Process().children():  # not yet reaped, so surely ours
                with contextlib.suppress(psutil.Error):
                    child.kill()
            os._exit(128 + signum)
        return on_stop

    def on_stats_request():
        if not config.stats_file:
            log.info("SIGUSR1: no --stats-file to write the counters to; ignored")
            return
        try:
            write_stats_file(config.stats_file, stats, config.model)
        except OSError as exc:  # e.g. EMFILE: the server is out of descriptors; it must keep serving
            log.warning("cannot write %s: %s", config.stats_file, exc.strerror)

    return signals.SignalRelay({
        signal.SIGINT: stop_action(signal.SIGINT),
        signal.SIGTERM: stop_action(signal.SIGTERM),
        signal.SIGUSR1: on_stats_request,
        signal.SIGHUP: lambda: log.info("SIGHUP ignored: there is no configuration to reload"),
    })
