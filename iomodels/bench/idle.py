"""Opening many connections: file-descriptor limits, loopback source addresses, idle connections.

Two limits stand between a client and thousands of connections to one server port:
- RLIMIT_NOFILE: every socket is a file descriptor. A process may raise its soft limit up to its
  hard limit without privileges, so each worker does; beyond the hard limit we say so and stop.
- The 4-tuple: a TCP connection is (source address, source port, destination address, port), and
  the kernel picks source ports from net.ipv4.ip_local_port_range (about 28,000 ports). Towards one
  server port, one source address therefore runs out of ports near that number, counting the
  connections of the last minute that still sit in TIME_WAIT on the side that closed first. The
  whole 127.0.0.0/8 block is local on Linux, so connections are spread over 127.0.0.1,
  127.0.0.2, ... as needed. IP_BIND_ADDRESS_NO_PORT lets bind() choose only the address and leave
  the port to connect(), which can then reuse a port towards a different destination.

Idle connections are connected, then held silent: they cost the server whatever its model pays per
open connection (a thread, a process, an entry in its interest set) without any traffic.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import resource
import socket

from iomodels.bench.errors import BenchError

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
FD_MARGIN = 64  # descriptors a worker needs besides its sockets (pipes, epoll, libraries)
# Share of the ephemeral port range one source address is asked to carry, leaving room for
# TIME_WAIT leftovers of earlier runs and for other programs talking to the same port.
PORT_SHARE = 0.75


class LimitError(BenchError):
    """The machine's limits cannot hold the connections asked for (one clear line)."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def raise_nofile(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards the hard limit; LimitError if still short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_MARGIN
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < want:
        raise LimitError(
            f"{needed} connections in one worker need about {want} file descriptors, but RLIMIT_NOFILE "
            f"allows {hard} (hard limit): raise it (ulimit -Hn, /etc/security/limits.conf) "
            f"or spread the load with --workers")
    return soft


def ephemeral_ports() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28232  # Linux's default range, 32768-60999


class SourcePlan:
    """Which loopback source address the i-th connection (numbered over all workers) binds to."""

    def __init__(self, host: str, total: int):
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.per_address = max(1, int(ephemeral_ports() * PORT_SHARE))
        self.spread = self.family == socket.AF_INET and total > self.per_address
        self.addresses = -(-total // self.per_address) if self.spread else 1
        if self.addresses > 250:
            raise LimitError(f"{total} connections would need {self.addresses} loopback source addresses")

    def address(self, index: int) -> str | None:
        """None: let the kernel choose (no spreading needed)."""
        return f"127.0.0.{1 + index // self.per_address}" if self.spread else None

    def describe(self) -> str | None:
        if not self.spread:
            return None
        return (f"connections spread over {self.addresses} loopback source addresses "
                f"(127.0.0.1-127.0.0.{self.addresses}): one source address holds about "
                f"{self.per_address} connections to one port (ip_local_port_range)")


def new_socket(family: int, source: str | None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(loop, address: tuple, family: int, source: str | None, timeout: float) -> socket.socket:
    """A connected non-blocking socket, or OSError (TimeoutError after `timeout` seconds)."""
    sock = new_socket(family, source)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "connect timed out (is the server's listen backlog full?)"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return ("no free source port (EADDRNOTAVAIL): ephemeral ports exhausted, "
                "closed connections stay in TIME_WAIT for 60 s")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return "out of file descriptors (RLIMIT_NOFILE)"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc)


class IdleConnection:
    """asyncio protocol for a silent connection: anything the server says or does is noted."""

    closing = False  # set when we close it ourselves: Tally.connection_lost then ignores the loss

    def __init__(self, tally):
        self.tally = tally
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.tally.protocol_errors += 1  # an echo server must not speak first

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.tally.connection_lost(self, exc, idle=True)

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass


class ConnectErrors:
    """Connect failures by reason, for one line each in the report."""

    def __init__(self):
        self.by_reason: dict[str, int] = {}

    def add(self, exc: BaseException) -> None:
        reason = describe_connect_error(exc)
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())


async def open_many(loop, address, plan: SourcePlan, indices, protocol_factory, errors: ConnectErrors,
                    timeout: float = 10.0, parallel: int = 256) -> list:
    """Connect one socket per global index, `parallel` at a time; returns the protocols connected."""
    gate = asyncio.Semaphore(parallel)
    protocols = []

    async def one(index):
        async with gate:
            try:
                sock = await connect(loop, address, plan.family, plan.address(index), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                errors.add(exc)
                return
            _, protocol = await loop.create_connection(protocol_factory, sock=sock)
            protocols.append(protocol)

    await asyncio.gather(*(one(i) for i in indices))
    return protocols
