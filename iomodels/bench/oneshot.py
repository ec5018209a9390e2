"""Connect per request: the "no connection pool" baseline.

Every request opens a new TCP connection, sends one message, reads the whole reply, closes. Its
latency runs from before `connect()`, so it includes the handshake and the server's accept. The
side that closes first keeps the connection in TIME_WAIT for 60 s, holding its source port: here
that is the client, so at a few hundred requests a second one source address runs out of
ephemeral ports (connect fails with EADDRNOTAVAIL). That is a real limit of this pattern, and the
report says so; the bench then moves on to the next loopback source address (127.0.0.2, ...) and
counts every failed connect separately.
"""

from __future__ import annotations

import asyncio
import errno
from time import perf_counter_ns

from iomodels.bench.connection import Tally
from iomodels.bench.schedule import Schedule
from iomodels.addresses import LAST_SOURCE, is_loopback, source_address
from iomodels.bench.idle import connect

CONNECT_TIMEOUT = 10.0
RETRY_PAUSE = 0.001  # after a failed connect, so a refusing server is not hammered in a spin


class OneShotRequests:
    closing = False  # read by Tally.connection_lost: losses here are never on purpose

    def __init__(self, loop, address, family: int, tally: Tally, script):
        self.loop = loop
        self.address = address
        self.family = family
        self.tally = tally
        self.next_message = script
        self.source = 1  # 127.0.0.N; 1 = let the kernel choose, as a client normally does
        self.exhausted = 0
        self.nbytes = 0
        self.requests = 0
        self.tasks: set[asyncio.Task] = set()

    def _source_address(self) -> str | None:
        return source_address(self.source)

    async def request(self, start_ns: int) -> None:
        message, expect = self.next_message()
        try:
            sock = await connect(self.loop, self.address, self.family, self._source_address(), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.tally.finishing:
                self._connect_failed(exc)
            await asyncio.sleep(RETRY_PAUSE)
            return
        reply = bytearray()
        try:
            await self.loop.sock_sendall(sock, message)
            while len(reply) < len(expect):
                chunk = await self.loop.sock_recv(sock, len(expect) - len(reply))
                if not chunk:  # EOF before the whole reply
                    self.tally.connection_lost(self, None)
                    return
                reply += chunk
        except OSError as exc:
            self.tally.connection_lost(self, exc)
            return
        finally:
            sock.close()
        self.nbytes += len(reply)
        self.requests += 1
        if reply != expect:
            self.tally.new_mismatches += 1
            if self.tally.first_mismatch is None:  # each request has a connection of its own
                wrong = next(i for i in range(len(expect)) if reply[i] != expect[i])
                self.tally.first_mismatch = {"connection": self.requests - 1, "request": 1, "byte": wrong,
                                             "expected": expect[wrong], "got": reply[wrong]}
        self.tally.latencies.append(perf_counter_ns() - start_ns)

    def _connect_failed(self, exc: BaseException) -> None:
        self.tally.connect.add(exc)
        # Loopback source addresses reach only a loopback target (not one of --allow-remote).
        if (isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL and self.source < LAST_SOURCE
                and is_loopback(self.address[0])):
            self.exhausted += 1
            self.source += 1

    async def closed_loop(self, end_ns: int) -> None:
        while perf_counter_ns() < end_ns and not self.tally.finishing:
            await self.request(perf_counter_ns())

    def start(self, connections: int, t0_ns: int, end_ns: int, rate: float | None) -> Schedule | None:
        """`connections` requests at a time in closed loop; with `rate`, at most that many in flight."""
        if rate is None:
            for _ in range(connections):
                self._spawn(self.closed_loop(end_ns))
            return None
        gate = asyncio.Semaphore(connections)

        async def gated(intended_ns: int) -> None:
            async with gate:
                if not self.tally.finishing:
                    await self.request(intended_ns)

        schedule = Schedule(self.loop, rate, t0_ns, end_ns, lambda t: self._spawn(gated(t)))
        schedule.tick()
        return schedule

    def _spawn(self, coroutine) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
