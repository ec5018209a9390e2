"""The process entry point of `iomodels serve`: one start-up for one process and for `--workers`.

1. validate the config, check the model can run here (io_uring may be forbidden);
2. bind and listen (one process), or hold the port and start the workers (`--workers N`);
3. start the signal relay, start the metrics endpoint, then print the ready line
   `listening on HOST:PORT (model NAME)` (iomodels/ready.py) and flush it: tools and tests wait
   for that line;
4. run the model's `serve(listener, config, stats, stop, new_session)` (or supervise the
   workers) until it returns; write the stats file; return the exit status.

Signals (blocked in every thread, taken by serving/signals.py's relay thread in sigwait()):
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
import tempfile

import psutil

from iomodels import addresses, procstats, ready
from iomodels.serving import metrics, models, signals, toolkit, workers
from iomodels.serving.config import ConfigError, ServerConfig
from iomodels.serving.stats import Stats

log = logging.getLogger("iomodels")


def run(config: ServerConfig) -> int:
    """Serve until stopped; return the exit status. Raises ConfigError for user errors."""
    model = models.load(config.model)
    reason = models.unavailable_reason(config.model)
    if reason:
        raise ConfigError(f"model {config.model} cannot run here: {reason}")
    if config.workers > 1 and not model.MODEL.multi_worker:
        raise ConfigError(f"--workers {config.workers}: model {config.model} runs as a single process; "
                          "only event-driven models can share a port between worker processes")
    if config.stats_file:
        check_stats_path(config.stats_file)
    configure_logging(config.log_level)
    warn_if_exposed(config.host, "--host")
    stats = Stats()
    stop = toolkit.Stop(config.drain_timeout)
    # Bound before the listener, so that a busy port is one line and exit status 2, not a crash
    # after the ready line; served (a thread) only after any worker process has been forked.
    endpoint = None
    if config.metrics_port is not None:
        warn_if_exposed(config.metrics_host, "--metrics-host")
        endpoint = metrics.bind_metrics(config.metrics_host, config.metrics_port, stats)
    if config.workers > 1:
        pool = workers.WorkerPool(model, config, stats, stop)
        sockname, serve, close = pool.start(), pool.supervise, pool.close
    else:
        listener = toolkit.open_listener(config)
        stop.watch_listener(listener)
        sockname, close = listener.getsockname(), listener.close

        def serve() -> int:
            model.serve(listener, config, stats, stop, toolkit.session_factory(config))
            return 0
    relay = handle_signals(stop, stats, config)
    try:
        if endpoint is not None:
            metrics.start_metrics(endpoint)
        announce_ready(sockname[0], sockname[1], config.model)
        status = serve()
    finally:
        close()
        relay.close()
        stop.close()
        if config.stats_file:
            write_stats_file(config.stats_file, stats, config.model)
    log.debug("stopped: %s", stats.snapshot())
    return status


def warn_if_exposed(host: str, flag: str) -> None:
    if not addresses.is_loopback(host):
        log.warning("%s %s: reachable from other machines, with no authentication; "
                    "bind 127.0.0.1 unless that is what you want", flag, host)


def announce_ready(host: str, port: int, model: str) -> None:
    """Print the ready line, flushed. Nobody to read it (stdout closed) is a user error: the
    tools that start a server wait for that line, so serving unannounced would serve no one."""
    try:
        if sys.stdout is None:
            raise BrokenPipeError("stdout is closed")
        ready.announce(host, port, model)
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        with contextlib.suppress(OSError):  # nothing left in the buffer to fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        raise ConfigError(f"cannot print the ready line on stdout ({exc}): not serving") from None


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")


def check_stats_path(path: str) -> None:
    """Refuse at start-up a --stats-file that could never be written (not at the first SIGUSR1)."""
    if os.path.isdir(path):
        raise ConfigError(f"--stats-file {path}: is a directory")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise ConfigError(f"--stats-file {path}: no such directory {directory}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".iomodels-probe-", dir=directory)
    except OSError as exc:
        raise ConfigError(f"--stats-file {path}: cannot create files in {directory}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def write_stats_file(path: str, stats: Stats, model: str) -> None:
    """Write the counters to `path` so that readers never see half a file, even in /tmp.

    The temporary is created beside the target with O_CREAT | O_EXCL | O_NOFOLLOW and a random
    name (tempfile.mkstemp): nobody can have planted a symlink or a file there for us to follow
    or truncate. os.replace renames it over the target (the target itself, were it a symlink, is
    replaced, not followed). The file is left readable by its owner only (mkstemp's 0600).
    """
    # CPU and context switches, dead threads and reaped children included.
    snapshot = {"model": model, "pid": os.getpid(), **stats.snapshot(), **procstats.own_usage()}
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(snapshot, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def handle_signals(stop: toolkit.Stop, stats: Stats, config: ServerConfig) -> signals.SignalRelay:
    """What each signal does, in the relay thread (serving/signals.py)."""
    def stop_action(signum: int):
        name = signal.Signals(signum).name

        def on_stop():
            if not stop.requested:
                log.info("%s: stopping (draining for up to %.1f s)", name, stop.drain_timeout)
                stop.request()
                return
            log.warning("%s again while draining: stopping at once, %d connections cut, exit status %d",
                        name, stats.snapshot()["connections_open"], 128 + signum)
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
