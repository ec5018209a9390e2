"""Servers that get the protocol wrong on purpose, run in the test process (threads, port 0).

For the tests of every client of the project (the load generator, `iomodels client`, the C load
generator): a thread per connection, an optional greeting sent before any request, `recv` then
`sendall` of a transformed reply (whole, or a byte at a time: a trickle), with an optional one-time
stall. Each counts the bytes it sent so tests can check a client's totals.
"""

from __future__ import annotations

import socket
import threading
import time


def no_uppercase(data: bytes) -> bytes:
    return data


def unicode_uppercase(data: bytes) -> bytes:
    # The classic mistake: decode, str.upper(), encode. 0xE9 'é' becomes 0xC9 'É'.
    return data.decode("latin-1").upper().encode("latin-1", errors="replace")


def one_byte_too_many(data: bytes) -> bytes:
    return data.upper() + b"!"


class FaultyServer:
    def __init__(self, reply=bytes.upper, stall_after_bytes: int | None = None, stall_for: float = 0.0,
                 greeting: bytes = b"", byte_delay: float = 0.0):
        self.reply = reply
        self.byte_delay = byte_delay  # > 0: send each reply one byte every byte_delay seconds
        self.greeting = greeting  # sent as soon as a connection is accepted, before any request
        self.stall_after = stall_after_bytes
        self.stall_for = stall_for
        self.stall_until = 0.0
        self.received = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.listener.getsockname()[1]
        self.connections: set[socket.socket] = set()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            while data := conn.recv(65536):
                with self.lock:
                    self.received += len(data)
                    if self.stall_after is not None and self.received >= self.stall_after:
                        self.stall_after = None
                        self.stall_until = time.monotonic() + self.stall_for
                    pause = self.stall_until - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                reply = self.reply(data)
                self._send(conn, reply)
                with self.lock:
                    self.sent += len(reply)
        except OSError:
            pass
        finally:
            conn.close()

    def _send(self, conn: socket.socket, reply: bytes) -> None:
        if not self.byte_delay:
            conn.sendall(reply)
            return
        for i in range(len(reply)):
            time.sleep(self.byte_delay)
            conn.sendall(reply[i:i + 1])

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def close(self) -> None:
        try:  # on Linux, shutdown() wakes a thread blocked in accept(); close() alone would not
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self.threads:
            thread.join(10)

    def __enter__(self) -> FaultyServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
