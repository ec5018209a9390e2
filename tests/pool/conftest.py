"""`fake_server`: an in-process echo server whose connections a test closes, resets or cuts at will.

The real servers (the `serve` fixture) decide for themselves when to close; these unit tests need
the server to misbehave at one chosen moment, deterministically.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import pytest

from tests.support import wait_until


class FakeServer:
    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.accepted = 0
        # How connections opened from now on answer: "echo", "hangup" (close on the first request
        # without a byte of reply), "cut" (one byte of reply, then close).
        self.mode = "echo"
        self._conns: dict[socket.socket, str] = {}  # server side -> its mode
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._start(self._accept_loop)

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was shut down
            with self._lock:
                self.accepted += 1
                self._conns[conn] = self.mode
            self._start(self._handle, conn)

    def _handle(self, conn):
        try:
            while data := conn.recv(65536):
                mode = self._conns[conn]
                if mode == "hangup":
                    return
                conn.sendall(data.upper()[:1] if mode == "cut" else data.upper())
                if mode == "cut":
                    return
        except OSError:
            pass
        finally:
            with self._lock:
                del self._conns[conn]
            conn.close()

    def set_existing(self, mode: str) -> None:
        """Change how the connections already open answer their next request."""
        with self._lock:
            for conn in self._conns:
                self._conns[conn] = mode

    def close_existing(self, reset: bool = False) -> None:
        """Close every open connection (FIN, or RST with `reset`) and wait until they are gone."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            # These fail (ENOTCONN, EBADF) if the client's reset got there first: then the handler
            # is closing the connection anyway.
            with contextlib.suppress(OSError):
                if reset:  # SO_LINGER(1, 0): the handler's close() sends a reset, not a FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # shutdown, unlike close, wakes the handler blocked in recv() on this socket.
                conn.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)
        assert wait_until(lambda: not self._conns, timeout=10)

    def stop(self):
        self.listener.shutdown(socket.SHUT_RD)  # wakes the blocked accept()
        self.close_existing()
        for thread in self._threads:
            thread.join(10)
        self.listener.close()
        assert not any(t.is_alive() for t in self._threads), "fake server threads left running"


@pytest.fixture
def fake_server():
    server = FakeServer()
    yield server
    server.stop()
