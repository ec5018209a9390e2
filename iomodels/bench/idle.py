"""Opening many connections: file-descriptor limits, loopback source addresses, idle connections.

Two limits stand between a client and thousands of connections to one server port:
- RLIMIT_NOFILE: every socket is a file descriptor. A process may raise its soft limit up to its
  hard limit without privileges, so each worker does; beyond the hard limit we say so and stop.
- The 4-tuple: one source address holds about 28,000 connections to one server port, so
  connections are spread over loopback source addresses (iomodels/addresses.py, the one policy).

Idle connections are connected, then held silent: they cost the server whatever its model pays per
open connection (a thread, a process, an entry in its interest set) without any traffic.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket

from iomodels.addresses import SourceAddresses, bind_source, is_loopback
from iomodels.bench.errors import BenchError
from iomodels.linger import reset_on_close

FD_MARGIN = 64  # descriptors a worker needs besides its sockets (pipes, epoll, libraries)


class LimitError(BenchError):
    """The machine's limits cannot hold the connections asked for (one clear line)."""


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


class SourcePlan(SourceAddresses):
    """The bench's source-address plan: the shared policy, with its limit as the bench's LimitError."""

    def __init__(self, host: str, total: int):
        try:
            # A remote target (--allow-remote) is reached from the kernel's own choice of address:
            # loopback source addresses cannot route there.
            super().__init__(host, total if is_loopback(host) else 1)
        except ValueError as exc:
            raise LimitError(str(exc)) from None


def new_socket(family: int, source: str | None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bind_source(sock, source)
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
        self.tally.protocol_error("the server sent data on an idle connection (an echo server must not speak first)")

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.tally.connection_lost(self, exc, idle=True)

    def reset(self) -> None:
        """Close with a reset (SO_LINGER 0): a silent connection has nothing to flush, and a FIN
        would leave its port in TIME_WAIT for a minute; after a run with 100,000 idle connections,
        that many leftovers make the next run's connects fail or crawl."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            reset_on_close(sock)
        self.transport.close()

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


def on_transports(loop, protocol_factory):
    """An `attach` for open_many: each socket goes to an asyncio transport and a new protocol."""
    async def attach(sock):
        _, protocol = await loop.create_connection(protocol_factory, sock=sock)
        return protocol
    return attach


async def open_many(loop, address, plan: SourcePlan, indices, attach, errors: ConnectErrors,
                    timeout: float = 10.0, parallel: int = 256) -> list:
    """Connect one socket per global index, `parallel` at a time, and hand each to `attach(sock)`
    (a coroutine returning its protocol, see on_transports); returns the protocols connected."""
    gate = asyncio.Semaphore(parallel)
    protocols = []

    async def one(index):
        async with gate:
            try:
                sock = await connect(loop, address, plan.family, plan.address(index), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                errors.add(exc)
                return
            protocols.append(await attach(sock))

    await asyncio.gather(*(one(i) for i in indices))
    return protocols
