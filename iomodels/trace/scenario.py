"""The scripted client: connect, stay silent for a delay, send one request, read the reply, close.

Every step is stamped twice: `time.time()` (the wall clock, the one strace's `-ttt` stamps use, so
the client's moments fall on the server's timeline) and `time.monotonic()` (for the delay itself,
immune to clock steps). The delay is the tutorial's three days at the ticket office: the time the
server must wait for data that has not been sent yet.
"""

from __future__ import annotations

import dataclasses
import socket
import time

REQUEST = b"who waits where?"
DEFAULT_DELAY = 0.2


class ScenarioFailed(RuntimeError):
    """The server did not answer the scenario's request as it should."""


@dataclasses.dataclass
class ClientTimes:
    """Epoch seconds of each step, as the client saw them, and what it measured."""
    connect_start: float
    connected: float
    send_start: float
    sent: float           # sendall() returned: on loopback, the bytes are in the server's receive queue
    reply_done: float
    closed: float
    client_port: int
    request: bytes
    delay_s: float        # the silence asked for
    silent_s: float       # the silence measured (monotonic), connect -> send

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "request": self.request.decode("ascii", "replace")}


def run(address: tuple[str, int], delay: float = DEFAULT_DELAY, request: bytes = REQUEST,
        timeout: float = 10.0) -> ClientTimes:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    try:
        connect_start = time.time()
        sock.connect(address)
        connected, silent_from = time.time(), time.monotonic()
        client_port = sock.getsockname()[1]
        time.sleep(delay)
        send_start = time.time()
        silent_s = time.monotonic() - silent_from
        sock.sendall(request)
        sent = time.time()
        reply = b""
        while len(reply) < len(request):
            chunk = sock.recv(len(request) - len(reply))
            if not chunk:
                break
            reply += chunk
        reply_done = time.time()
    except OSError as exc:
        raise ScenarioFailed(f"the scenario's client failed: {exc}") from None
    finally:
        sock.close()
    closed = time.time()
    if reply != request.upper():
        raise ScenarioFailed(f"the server answered {reply!r}, not {request.upper()!r}")
    return ClientTimes(connect_start, connected, send_start, sent, reply_done, closed, client_port,
                       request, delay, silent_s)
