"""`--metrics-port`: the server's counters and its process figures in Prometheus' text format.

Every scrape reads `Stats.snapshot()` and the process tree (procstats) afresh, through a custom
collector, so nothing is copied on the hot path: the models keep bumping plain integers.

    iomodels_recv_calls_total 1234            # one counter per entry of stats.COUNTERS
    iomodels_connections_open 10
    iomodels_process_cpu_seconds_total{mode="user"} 0.52
    iomodels_process_context_switches_total{kind="voluntary"} 812

The endpoint is bounded, unlike prometheus_client's own `start_http_server` (no timeout, no limit:
each half-sent request held a thread and a descriptor forever, outside --max-connections, until
the server ran out of descriptors): it binds loopback unless `--metrics-host` says otherwise
(whatever `--host` is), serves at most `MAX_SCRAPES` requests at once (more are closed at once),
and closes any request still unanswered `REQUEST_TIMEOUT` seconds after it connected. The page
itself is prometheus_client's `generate_latest`; the HTTP server is the standard library's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from iomodels import procstats
from iomodels.serving import errnos, toolkit
from iomodels.serving.config import ConfigError
from iomodels.serving.stats import COUNTERS, Stats

PREFIX = "iomodels_"
REQUEST_TIMEOUT = 5.0  # seconds from connecting to the last byte of the reply
MAX_SCRAPES = 8  # requests served at once; a scraper needs one


class StatsCollector:
    def __init__(self, stats: Stats, pid: int | None = None):
        self.stats = stats
        self.pid = pid or os.getpid()

    def collect(self):
        snapshot = self.stats.snapshot()
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(PREFIX + name, help_text, value=snapshot[name])
        yield GaugeMetricFamily(PREFIX + "connections_open", "connections open now",
                                value=snapshot["connections_open"])
        yield GaugeMetricFamily(PREFIX + "uptime_seconds", "seconds since the server started",
                                value=snapshot["uptime_s"])
        yield from self._process_figures()

    def _process_figures(self):
        figures = procstats.tree(self.pid)
        cpu = CounterMetricFamily(PREFIX + "process_cpu_seconds", "CPU time of the process tree "
                                  "(reaped children included)", labels=["mode"])
        cpu.add_metric(["user"], figures.cpu_user_s)
        cpu.add_metric(["system"], figures.cpu_system_s)
        yield cpu
        switches = CounterMetricFamily(PREFIX + "process_context_switches", "context switches of "
                                       "the live threads of the process tree", labels=["kind"])
        switches.add_metric(["voluntary"], figures.ctx_voluntary)
        switches.add_metric(["involuntary"], figures.ctx_involuntary)
        yield switches
        for name, help_text, value in (
                ("process_resident_memory_bytes", "resident memory of the process tree", figures.rss_bytes),
                ("process_threads", "threads of the process tree", figures.threads),
                ("process_children", "live child processes", figures.processes - 1)):
            yield GaugeMetricFamily(PREFIX + name, help_text, value=value)


class _ScrapeHandler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT  # per recv/send; MetricsServer bounds the whole request
    registry: CollectorRegistry

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # one line per scrape is noise
        pass


class MetricsServer(ThreadingHTTPServer):
    """HTTP/1.0, one request per connection, at most `MAX_SCRAPES` at once, each one bounded in time."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry):
        handler = type("Handler", (_ScrapeHandler,), {"registry": registry})
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        self._started: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self.refused = 0
        super().__init__(address, handler)

    def get_request(self):
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in errnos.ACCEPT_CAPACITY:  # out of descriptors: no busy loop on accept
                time.sleep(0.1)
            raise

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            toolkit.abort(request)
            return
        with self._lock:
            self._started[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing else will give the slot back
            self._finished(request)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._finished(request)

    def _finished(self, request) -> None:
        with self._lock:
            if self._started.pop(request, None) is not None:
                self._slots.release()

    def service_actions(self) -> None:
        """Between two waits of serve_forever (every 0.5 s): cut requests past their time."""
        limit = time.monotonic() - REQUEST_TIMEOUT
        with self._lock:
            late = [request for request, started in self._started.items() if started < limit]
        for request in late:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)  # its thread wakes, fails and closes it


def bind_metrics(host: str, port: int, stats: Stats) -> MetricsServer:
    """Bind the endpoint (a port in use, or refused: ConfigError); `start_metrics` serves it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    try:
        return MetricsServer((host, port), registry)
    except OSError as exc:
        raise ConfigError(f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror}") from None


def start_metrics(server: MetricsServer) -> threading.Thread:
    """Serve from a daemon thread (it takes no signal: serving/signals.py); log the address."""
    host, port = server.server_address[:2]
    toolkit.log.info("metrics on http://%s:%d/metrics", host, port)
    return toolkit.start_thread(server.serve_forever, name="metrics")


def serve_metrics(host: str, port: int, stats: Stats) -> tuple[MetricsServer, threading.Thread]:
    """Bind and serve at once; return (http server, thread)."""
    server = bind_metrics(host, port, stats)
    return server, start_metrics(server)
