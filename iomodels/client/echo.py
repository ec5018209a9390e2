"""The client: the tutorial's `>>: ` loop, made correct, plus piped, raw and one-shot use.

The tutorial's client sends a message and prints whatever one `recv(1024)` returns: a reply split
by TCP, or longer than 1024 bytes, comes out cut, and the rest is printed after the *next*
message. Ours knows the reply has exactly the request's length and reads until all of it arrived,
with `sendall` so a partial send is never ignored. It does not trust the server either: a reply
that is not the request uppercased, bytes that answer nothing (before a request, or left over
after one), or a reply that does not complete within `--timeout` (for the whole reply, not per
`recv`: a server trickling one byte a second cannot hold it) end the session with one line on
stderr and exit status 1.

Four ways in:
- typed at a terminal: line editing and history (readline, see terminal.py), lines of any length;
- piped lines: each line is one message, its reply one line out, bytes as they are (invalid UTF-8
  included; empty lines are skipped, as in the tutorial);
- `--raw`: stdin's bytes go to the server untouched, in the chunks they arrive in, newlines and
  all, and the replies' bytes go to stdout untouched;
- `--message TEXT`: one request, one reply.

Exit status: 0 done, 1 the server failed (refused, closed, timed out, wrong reply), 130 Ctrl-C,
141 (128 + SIGPIPE, as `seq | head` gives) when stdout's reader went away.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time

from iomodels.addresses import format_address
from iomodels.client.errors import ReplyError, StdoutClosed

EXIT_CONNECTION = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT: the shell's convention for Ctrl-C
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE
RAW_CHUNK = 65536


class EchoClient:
    """A blocking connection to an uppercase-echo server: `request(data)` returns the whole reply."""

    def __init__(self, host: str, port: int, timeout: float | None = 10.0):
        if timeout == math.inf:  # `--timeout inf`: wait as long as it takes (sockets refuse inf)
            timeout = None
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def request(self, data: bytes) -> bytes:
        """Send `data`; return its reply, checked to be `data.upper()`, within `timeout` in all."""
        # Kept on the client so the pool can tell a failure before any reply byte (safe to retry).
        reply = self.reply_so_far = bytearray()
        self.check_quiet()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self._set_timeout(deadline)
        try:
            self.sock.sendall(data)  # the timeout bounds the whole sendall (Python >= 3.5)
        except TimeoutError:
            raise TimeoutError(f"the server took no request within {self.timeout:g} s") from None
        while len(reply) < len(data):
            self._set_timeout(deadline)
            try:
                chunk = self.sock.recv(len(data) - len(reply))
            except TimeoutError:
                raise TimeoutError(f"no whole reply within {self.timeout:g} s "
                                   f"({len(reply)} of {len(data)} bytes arrived)") from None
            if not chunk:
                raise ConnectionResetError(f"server closed the connection after {len(reply)} of {len(data)} bytes")
            reply += chunk
        expected = data.upper()
        if reply != expected:
            at = next(i for i, (got, want) in enumerate(zip(reply, expected)) if got != want)
            raise ReplyError(f"the reply is not the request uppercased: byte {at} is {reply[at]:#04x}, "
                             f"expected {expected[at]:#04x}")
        return bytes(reply)

    def check_quiet(self) -> None:
        """Raise if the server sent bytes nobody asked for, or closed, since the last reply."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)  # with a timeout, recv would first wait for data, MSG_DONTWAIT or not
        try:
            waiting = self.sock.recv(RAW_CHUNK, socket.MSG_PEEK)
        except BlockingIOError:
            return
        finally:
            self.sock.settimeout(timeout)
        if not waiting:
            raise ConnectionResetError("the server closed the connection")
        raise ReplyError(f"the server sent {len(waiting)} bytes that answer no request: {waiting[:40]!r}")

    def _set_timeout(self, deadline: float | None) -> None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole reply within {self.timeout:g} s")
            self.sock.settimeout(left)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "EchoClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def _piped_lines():
    for line in sys.stdin.buffer:
        yield line.rstrip(b"\r\n")


def _raw_chunks():
    while chunk := os.read(sys.stdin.fileno(), RAW_CHUNK):
        yield chunk


def _session(client: EchoClient, message: str | None, raw: bool, history: str | None) -> None:
    if message is not None:
        _write(client.request(os.fsencode(message)) + b"\n")
        return
    if raw:
        for chunk in _raw_chunks():
            _write(client.request(chunk))
        client.check_quiet()
        return
    if sys.stdin.isatty():
        from iomodels.client import terminal
        lines = terminal.typed_lines(client.sock, history)
    else:
        lines = _piped_lines()
    for line in lines:
        if line:  # as in the tutorial: an empty line is not sent
            _write(client.request(line) + b"\n")
    client.check_quiet()


def main(address: tuple[str, int], message: str | None = None, timeout: float = 10.0, raw: bool = False,
         history: str | None = None) -> int:
    host, port = address
    try:
        with EchoClient(host, port, timeout) as client:
            _session(client, message, raw, history)
    except StdoutClosed:
        # Not the server's fault, and nothing to say: point stdout at /dev/null so that the
        # interpreter's own flush at exit does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_STDOUT_CLOSED
    except KeyboardInterrupt:
        if sys.stdin.isatty():
            print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ReplyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        print(f"iomodels client: {format_address(host, port)}: {reason}", file=sys.stderr)
        return EXIT_CONNECTION
    return 0
