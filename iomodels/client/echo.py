"""The client: the tutorial's `>>: ` loop, made correct, plus piped and one-shot use.

The tutorial's client sends a message and prints whatever one `recv(1024)` returns: a reply split
by TCP, or longer than 1024 bytes, comes out cut, and the rest is printed after the *next*
message. Ours knows the reply has exactly the request's length and reads until all of it arrived,
with `sendall` so a partial send is never ignored.
"""

from __future__ import annotations

import socket
import sys

EXIT_CONNECTION = 1


class EchoClient:
    """A blocking connection to an uppercase-echo server: `request(data)` returns the whole reply."""

    def __init__(self, host: str, port: int, timeout: float | None = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def request(self, data: bytes) -> bytes:
        # Kept on the client so the pool can tell a failure before any reply byte (safe to retry).
        reply = self.reply_so_far = bytearray()
        self.sock.sendall(data)
        while len(reply) < len(data):
            chunk = self.sock.recv(len(data) - len(reply))
            if not chunk:
                raise ConnectionResetError(f"server closed the connection after {len(reply)} of {len(data)} bytes")
            reply += chunk
        return bytes(reply)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "EchoClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lines(interactive: bool):
    if interactive:
        while True:
            try:
                yield input(">>: ")
            except EOFError:
                print()
                return
    else:
        for line in sys.stdin:
            yield line.rstrip("\r\n")


def main(address: tuple[str, int], message: str | None = None, timeout: float = 10.0) -> int:
    host, port = address
    try:
        with EchoClient(host, port, timeout) as client:
            if message is not None:
                messages = [message]
            else:
                messages = _lines(interactive=sys.stdin.isatty())
            for text in messages:
                if not text:
                    continue  # as in the tutorial: an empty line is not sent
                reply = client.request(text.encode("utf-8", "surrogateescape"))
                print(reply.decode("utf-8", "replace"), flush=True)
    except (OSError, ConnectionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        print(f"iomodels client: {host}:{port}: {reason}", file=sys.stderr)
        return EXIT_CONNECTION
    except KeyboardInterrupt:
        print()
    return 0

