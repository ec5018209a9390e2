"""A small fault-injecting TCP proxy for the tests: a hostile network between client and server.

netem is not in this kernel, so the faults toxiproxy offers as "toxics" are played here, in
user space, on loopback only:

- `latency`: every chunk is held this many seconds before it is passed on;
- `bandwidth`: at most this many bytes per second each way;
- `slice_bytes`: passed on in segments of this many bytes (1: one byte per TCP segment, with
  TCP_NODELAY on both legs), each `slice_delay` apart;
- `reset_after`: once this many bytes went upstream (client to server), both legs are reset
  (SO_LINGER 0) in the middle of the stream;
- `slow_close`: an end of stream (FIN) is passed on this many seconds late;
- `limit`: once this many bytes went downstream (server to client), both legs are closed.

Bounded like every load here: at most `max_connections` at once (more are reset), each pump
waits at most `idle` seconds for data, and `close()` tears everything down. It connects only to
a loopback target (iomodels.addresses.is_loopback); the listener binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
import time

from iomodels.addresses import is_loopback

LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclasses.dataclass(frozen=True)
class Faults:
    latency: float = 0.0
    bandwidth: int | None = None
    slice_bytes: int | None = None
    slice_delay: float = 0.0
    reset_after: int | None = None
    slow_close: float = 0.0
    limit: int | None = None


class FaultProxy:
    """`with FaultProxy(target, Faults(...)) as proxy:` clients connect to `proxy.address`."""

    def __init__(self, target: tuple[str, int], faults: Faults, max_connections: int = 64,
                 idle: float = 30.0):
        if not is_loopback(target[0]):
            raise ValueError(f"the fault proxy only forwards to loopback, not {target[0]}")
        self.target, self.faults = target, faults
        self.max_connections, self.idle = max_connections, idle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.resets = 0  # connections this proxy reset on purpose
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in sockets:
            sock.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                crowded = len(self._sockets) >= 2 * self.max_connections
            if crowded:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.settimeout(self.idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, server))
            link = _Link(self, client, server)
            self._start(link.pump, client, server, "up")
            self._start(link.pump, server, client, "down")


class _Link:
    """One proxied connection: two pumps, and what the faults count on it."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket):
        self.proxy, self.faults = proxy, proxy.faults
        self.client, self.server = client, server
        self.forwarded = {"up": 0, "down": 0}
        self.cut = False
        self.pumps_left = 2
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        faults = self.faults
        started, moved = time.monotonic(), 0
        try:
            while not self.cut:
                data = source.recv(65536)
                if self.cut:
                    break  # the other pump ended the link (and a reset must not become a FIN)
                if not data:
                    if faults.slow_close:
                        time.sleep(faults.slow_close)
                    sink.shutdown(socket.SHUT_WR)
                    break
                if direction == "down" and faults.limit is not None:
                    data = data[:max(0, faults.limit - self.forwarded["down"])]
                if faults.latency:
                    time.sleep(faults.latency)
                step = faults.slice_bytes or len(data)
                for start in range(0, len(data), step):
                    sink.sendall(data[start:start + step])
                    if faults.slice_delay:
                        time.sleep(faults.slice_delay)
                moved += len(data)
                self.forwarded[direction] += len(data)
                if faults.bandwidth:  # sleep until the average rate is back under the limit
                    time.sleep(max(0.0, moved / faults.bandwidth - (time.monotonic() - started)))
                if direction == "up" and faults.reset_after is not None \
                        and self.forwarded["up"] >= faults.reset_after:
                    self.proxy.resets += 1
                    self._cut(reset=True)
                    break
                if direction == "down" and faults.limit is not None \
                        and self.forwarded["down"] >= faults.limit:
                    self._cut(reset=False)
                    break
        except OSError:  # a leg failed (reset by its peer, or timed out): reset the other
            if not self.cut:
                self._cut(reset=True)
        finally:
            with self.lock:
                self.pumps_left -= 1
                last = self.pumps_left == 0
            if last:
                self._release()

    def _cut(self, reset: bool) -> None:
        """End both legs now, waking the other pump: with a RST (`reset`: SHUT_RD sends nothing,
        and the close that follows sends the RST) or with a FIN."""
        self.cut = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
                sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)

    def _release(self) -> None:
        with self.proxy._lock:
            self.proxy._sockets.difference_update((self.client, self.server))
        self.client.close()
        self.server.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()
