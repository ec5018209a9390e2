"""The protocol over one plain blocking socket: for Locust, whose users are gevent greenlets.

Under gevent the standard `socket` module is patched to yield to other greenlets instead of
blocking, so a plain `sendall` then `recv` loop is the natural client; nothing here may import
uvloop, asyncio servers or anything of `iomodels.serving` (gevent and a second event loop in one
process do not mix). Every reply is checked byte for byte against the request uppercased, and a
wrong one names its first wrong byte, as `iomodels bench` does.
"""

from __future__ import annotations

import socket
from time import perf_counter_ns

from iomodels.addresses import is_loopback
from iomodels.bench.payload import describe_byte

RECV_CHUNK = 1 << 16


class TargetError(ValueError):
    """A --host that cannot be loaded: one line for the user."""


class Mismatch(Exception):
    """The reply was not the request uppercased."""


def parse_target(host: str | None, allow_remote: bool) -> tuple[str, int, str | None]:
    """'127.0.0.1:PORT' (or tcp://..., [::1]:PORT) -> (address, port, warning or None).
    Resolves the name and sends nothing: a non-loopback target needs allow_remote."""
    if not host:
        raise TargetError("no target: give --host HOST:PORT (e.g. --host 127.0.0.1:9000)")
    text = host.removeprefix("tcp://").rstrip("/")
    name, sep, port_text = text.rpartition(":")
    name = name.strip("[]")
    if not sep or not name or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"--host must be HOST:PORT (e.g. 127.0.0.1:9000), not {host!r}")
    try:
        address = socket.getaddrinfo(name, int(port_text), type=socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetError(f"cannot resolve {name!r}: {exc}") from None
    if is_loopback(address):
        return address, int(port_text), None
    if not allow_remote:
        raise TargetError(f"refusing to load {name}: only the local machine (127.0.0.0/8 or ::1) unless "
                          f"told --allow-remote")
    return address, int(port_text), f"--allow-remote: loading {name} ({address}), another machine"


def describe_mismatch(number: int, expected: bytes, got: bytes) -> str:
    if len(got) != len(expected):
        return f"request {number}: expected {len(expected)} bytes, got {len(got)}"
    wrong = next(i for i in range(len(got)) if got[i] != expected[i])
    return f"request {number}, byte {wrong}: expected {describe_byte(expected[wrong])}, got {describe_byte(got[wrong])}"


class EchoSocket:
    """One connection; `request(message, expected)` -> latency in ns, or raises Mismatch / OSError."""

    def __init__(self, address: str, port: int, timeout: float):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.create_connection((address, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.family = family
        self.requests = 0

    def request(self, message: bytes, expected: bytes) -> int:
        start = perf_counter_ns()
        self.sock.sendall(message)
        self.requests += 1
        reply = bytearray()
        while len(reply) < len(expected):
            chunk = self.sock.recv(min(RECV_CHUNK, len(expected) - len(reply)))
            if not chunk:
                raise ConnectionError("the server closed the connection before the whole reply")
            reply += chunk
        latency = perf_counter_ns() - start
        if reply != expected:
            raise Mismatch(describe_mismatch(self.requests, expected, bytes(reply)))
        return latency

    def close(self) -> None:
        self.sock.close()
