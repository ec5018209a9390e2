"""ServerConfig: every knob of a server, validated once, before any socket is opened."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os

from iomodels.addresses import DEFAULT_HOST, DEFAULT_PORT
from iomodels.serving.core import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER

URING_MODES = ("oneshot", "multishot")
# The longest finite number of seconds a timing option takes (about 11.6 days): the kernel and the
# event loops refuse waits much past that (epoll_wait takes at most 2^31 - 1 ms, 24.8 days); `inf`
# says "never" where never has a meaning.
MAX_SECONDS = 1_000_000
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting the user can fix: reported as one line, exit status 2."""


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    model: str = "epoll"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    backlog: int = 1024
    # Pool size of `threadpool` (the limit it demonstrates).
    threads: int = 4
    # Processes sharing the port with SO_REUSEPORT (event-driven models).
    workers: int = 1
    # None means no limit other than the descriptor limit.
    max_connections: int | None = None
    # A connection that sends nothing for this long is closed (seconds; None, or inf: never).
    idle_timeout: float | None = None
    # The longest a connection may live, however active (seconds; None, or inf: forever). Slowloris guard.
    max_connection_age: float | None = None
    # After SIGTERM, how long open connections may finish before they are closed (inf: until they
    # all close; the toolkit's Stop and `seconds_until` turn it into waits without a timeout).
    drain_timeout: float = 3.0
    high_water: int = DEFAULT_HIGH_WATER
    low_water: int = DEFAULT_LOW_WATER
    # select's timeout (the tutorial's 0.5 s "ask every half second").
    poll_interval: float = 0.5
    # multishot: no receive to submit per request and no buffer per idle connection, the common
    # case here; oneshot: a buffer of --recv-size per connection, so a big message arrives in few
    # completions. `iomodels explain io_uring` says why; BENCHMARKS.md measures both.
    uring_mode: str = "multishot"
    # Bytes asked of one recv call.
    recv_size: int = 65536
    log_level: str = "info"
    metrics_port: int | None = None
    # The metrics endpoint binds loopback whatever `host` is: exposing it takes a flag of its own.
    metrics_host: str = "127.0.0.1"
    stats_file: str | None = None

    def __post_init__(self) -> None:
        for flag, host in (("--host", self.host), ("--metrics-host", self.metrics_host)):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if host != "localhost":
                    raise ConfigError(f"{flag} must be an IP address or localhost, not {host!r}") from None
        _check_range("--port", self.port, 0, 65535)
        _check_range("--backlog", self.backlog, 1, 65535)
        _check_range("--threads", self.threads, 1, 10_000)
        _check_range("--workers", self.workers, 1, 4 * (os.cpu_count() or 1) + 64)
        if self.max_connections is not None:
            _check_range("--max-connections", self.max_connections, 1, 10_000_000)
        for flag, field in (("--idle-timeout", "idle_timeout"), ("--max-connection-age", "max_connection_age")):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ConfigError(f"{flag} must be a positive number of seconds, not {value}")
            _check_seconds(flag, value)
            if value == math.inf:  # "never" has one spelling inside: None, which every model knows
                object.__setattr__(self, field, None)
        if not self.drain_timeout >= 0:
            raise ConfigError(f"--drain-timeout must be >= 0 seconds, not {self.drain_timeout}")
        _check_seconds("--drain-timeout", self.drain_timeout)
        if not (self.poll_interval > 0 and math.isfinite(self.poll_interval)):
            raise ConfigError(f"--poll-interval must be a positive, finite number of seconds, not {self.poll_interval}")
        _check_seconds("--poll-interval", self.poll_interval)
        _check_range("--high-water", self.high_water, 1, 1 << 40)
        _check_range("--low-water", self.low_water, 0, 1 << 40)
        if self.low_water > self.high_water:
            raise ConfigError(f"--low-water ({self.low_water}) must not exceed --high-water ({self.high_water})")
        if self.uring_mode not in URING_MODES:
            raise ConfigError(f"--uring-mode must be one of {', '.join(URING_MODES)}, not {self.uring_mode!r}")
        _check_range("--recv-size", self.recv_size, 1, 1 << 26)
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.metrics_port is not None:
            _check_range("--metrics-port", self.metrics_port, 0, 65535)
            if self.metrics_port and self.metrics_port == self.port:
                raise ConfigError(f"--metrics-port {self.metrics_port} is the port of --port: choose another")

    def replace(self, **changes) -> "ServerConfig":
        return dataclasses.replace(self, **changes)


def _check_seconds(flag: str, value: float | None) -> None:
    if value is not None and value != math.inf and value > MAX_SECONDS:
        raise ConfigError(f"{flag} must be at most {MAX_SECONDS} seconds (or inf: never), not {value:g}")


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{flag} must be an integer from {low} to {high}, not {value!r}")
