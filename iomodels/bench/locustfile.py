"""Locust user class for the uppercase-echo protocol: `locust -f "$(iomodels locustfile)" --host H:P`.

Reach for Locust when one machine cannot make the load (`--master` here, `--worker` on several
machines, or `--processes N` on one); `iomodels bench` is faster per core and measures more (CPU,
open loop, idle connections) as long as one machine is enough.

Each user holds one connection (plain blocking sockets: under Locust they are gevent's) and sends
one message at a time, checks the reply byte for byte, and reports it through Locust's `request`
event (a wrong reply is a failure naming its first wrong byte). Locust's own statistics round
response times to milliseconds, useless at loopback latencies, so every latency also goes, in
nanoseconds, into an HdrHistogram; workers send theirs with each report to the master
(`report_to_master`), which merges them exactly (`worker_report`) and prints the merged
percentiles in microseconds at the end, as one line starting with "iomodels locust:".

Options added to Locust's: --echo-size BYTES (default 64), --echo-timeout SECONDS (default 5),
--allow-remote (a target that is not this machine; refused otherwise). Users finish the request
they are in when the test stops (a stop timeout of 5 s unless --stop-timeout says otherwise), so
the counts match the server's, but for Locust's own shutdown with --processes, which can still
drop a user's last request (answered by the server, reported by nobody).
"""

from __future__ import annotations

import functools
import itertools
import logging
import sys
from array import array

from locust import User, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from iomodels.bench.blocking import EchoSocket, Mismatch, TargetError, parse_target
from iomodels.bench.histogram import LatencyHistogram
from iomodels.bench.payload import Messages, Size
from iomodels.units import parse_bytes

STOP_TIMEOUT = 5.0
REPORT_KEY = "iomodels_histogram"

_user_numbers = itertools.count()  # users start at different places in the message table
pending = array("q")  # ns, since the last report to the master
merged = LatencyHistogram()  # the master's (or a single process's) merge


@functools.cache
def _messages(size: int) -> Messages:
    return Messages(Size(size, size))  # one table for every user of the process


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--echo-size", type=str, default="64", help="message size in bytes (default: 64)")
    parser.add_argument("--echo-timeout", type=float, default=5.0, help="seconds to wait for a reply (default: 5)")
    parser.add_argument("--allow-remote", action="store_true", default=False,
                        help="allow a --host that is not this machine (refused otherwise)")


@events.init.add_listener
def _init(environment, **_):
    options = environment.parsed_options
    if options is None:
        return
    try:
        _, _, warning = parse_target(environment.host, options.allow_remote)
        parse_bytes(options.echo_size)
    except (TargetError, ValueError) as exc:
        logging.error("iomodels locust: %s", exc)
        sys.exit(2)
    if warning:
        logging.warning("iomodels locust: %s", warning)
    if not environment.stop_timeout:
        environment.stop_timeout = STOP_TIMEOUT  # let a user finish its request: counts stay exact


@events.report_to_master.add_listener
def _report(client_id, data):
    histogram = LatencyHistogram()
    histogram.record_batch(pending)
    del pending[:]
    used, bucket_counts, count, sum_ns, max_ns = histogram.encode()
    data[REPORT_KEY] = [used.tolist(), bucket_counts.tolist(), count, sum_ns, max_ns]


@events.worker_report.add_listener
def _worker_report(client_id, data):
    if REPORT_KEY in data:
        merged.merge_encoded(tuple(data[REPORT_KEY]))


@events.quit.add_listener
def _print_merged(exit_code, **_):
    runner = EchoUser.runner
    if isinstance(runner, WorkerRunner):
        return
    if not isinstance(runner, MasterRunner):
        merged.record_batch(pending)  # one process: nothing went through a master
        del pending[:]
    summary = merged.summary_us()
    figures = " ".join(f"{name}_us={value}" for name, value in summary.items())
    print(f"iomodels locust: requests={merged.count} {figures} (exact HdrHistogram merge over every "
          f"process, microseconds)", flush=True)


class EchoUser(User):
    """One connection, one message in flight, back to back."""

    wait_time = constant(0)
    runner = None  # set at the first start: the quit event needs to know where it runs

    def on_start(self):
        EchoUser.runner = self.environment.runner
        options = self.environment.parsed_options
        self.address, self.port, _ = parse_target(self.host, options.allow_remote)
        self.timeout = options.echo_timeout
        self.size = parse_bytes(options.echo_size)
        self.script = _messages(self.size).script(next(_user_numbers) * 7)
        self.name = f"{self.size} B"
        self.connection = None

    def on_stop(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    @task
    def echo(self):
        message, expected = self.script()
        fire = self.environment.events.request.fire
        try:
            if self.connection is None:
                self.connection = EchoSocket(self.address, self.port, self.timeout)
            latency = self.connection.request(message, expected)
        except (Mismatch, OSError) as exc:
            if self.connection is not None:
                self.connection.close()  # the stream is out of step now: start afresh
                self.connection = None
            fire(request_type="echo", name=self.name, response_time=0.0, response_length=0, exception=exc,
                 context={})
            return
        pending.append(latency)
        fire(request_type="echo", name=self.name, response_time=latency / 1e6, response_length=len(expected),
             exception=None, context={})
