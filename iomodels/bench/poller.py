"""The loaded connections' own epoll, drained by one callback of the event loop.

A worker's event loop (uvloop) watches one descriptor for all the loaded connections: this epoll.
When any of them is ready, the loop calls `drain` once; it asks the epoll which ones (epoll_wait
with a zero timeout, so it never blocks the loop) and, for each, makes one read(2) and hands the
bytes to its `Connection`. Timers, the parent's pipe and the idle connections stay on the loop.

Why not uvloop's transports, as everything else in the worker: a transport's receive goes through
libuv's read callback into a fresh 256 KiB buffer and one Python call per receive, and it is the
load generator's largest cost per message after the kernel's. Here a receive is one loop
iteration and one `os.read` sized to the bytes the connection is still owed, so that at depth 1
the bytes object comes from Python's small-object allocator. Measured side by side with the C
load generator in BENCHMARKS.md ("Load generator").

Writes go straight to the socket from the connection (one write(2) per refill). What the socket
does not take waits in the connection's `pending` buffer, and the epoll watches that socket for
writing until it has drained; later writes queue behind it, so the byte order never changes.
"""

from __future__ import annotations

import select
from os import read as os_read

READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
WRITABLE = select.EPOLLOUT
MAX_EVENTS = 1024  # per drain, after which the event loop runs its timers before the next one


class Poller:
    """fd -> connection. A connection is told `data_received(bytes)`, `lost(exc or None)` (the
    server closed, reset, or the socket failed) and `writable()` (only while it asked for it)."""

    def __init__(self, loop):
        self.loop = loop
        self.epoll = select.epoll()
        self.connections: dict[int, object] = {}
        loop.add_reader(self.epoll.fileno(), self.drain)

    def attach(self, sock, connection) -> None:
        fd = sock.fileno()
        self.connections[fd] = connection
        self.epoll.register(fd, select.EPOLLIN)
        connection.attached(sock, self)

    def watch_writes(self, fd: int, on: bool) -> None:
        self.epoll.modify(fd, select.EPOLLIN | select.EPOLLOUT if on else select.EPOLLIN)

    def forget(self, fd: int) -> None:
        """Before its socket closes (epoll forgets a closed descriptor by itself only once every
        duplicate of it is closed)."""
        if self.connections.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def drain(self) -> None:
        connections = self.connections
        for fd, events in self.epoll.poll(0, MAX_EVENTS):
            connection = connections.get(fd)
            if connection is None:
                continue  # closed earlier in this batch
            if events & WRITABLE:
                connection.writable()
                if not events & READ_EVENTS or fd not in connections:
                    continue
            try:
                data = os_read(fd, connection.read_size)
            except BlockingIOError:
                continue
            except OSError as exc:
                connection.lost(exc)
                continue
            if data:
                connection.data_received(data)
            else:
                connection.lost(None)

    def close(self) -> None:
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()
