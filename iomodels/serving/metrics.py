"""`--metrics-port`: the server's counters and its process figures in Prometheus' text format.

Every scrape reads `Stats.snapshot()` and the process tree (procstats) afresh, through a custom
collector, so nothing is copied on the hot path: the models keep bumping plain integers.

    iomodels_recv_calls_total 1234            # one counter per entry of stats.COUNTERS
    iomodels_connections_open 10
    iomodels_process_cpu_seconds_total{mode="user"} 0.52
    iomodels_process_context_switches_total{kind="voluntary"} 812
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from iomodels import procstats
from iomodels.serving import toolkit
from iomodels.serving.stats import COUNTERS, Stats

PREFIX = "iomodels_"


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


def serve_metrics(host: str, port: int, stats: Stats):
    """Serve /metrics on host:port from a daemon thread; return (http server, thread).

    The thread takes none of the signals meant for the main thread (toolkit.main_thread_signals_held).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    with toolkit.main_thread_signals_held():
        return start_http_server(port, addr=host, registry=registry)
