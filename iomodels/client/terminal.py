"""The client at a terminal: line editing, history, lines of any length, and a watch on the server.

A terminal in its default (canonical) mode edits lines itself, and badly for us: arrow keys arrive
as escape sequences (`abc`, Left, Left, `X` sent `abc\\x1b[D\\x1b[DX`), and Linux's line discipline
keeps at most 4,095 bytes of a line, dropping the rest without a word. The standard library's
readline (GNU readline or libedit) reads the terminal key by key (non-canonical mode) and edits
the line itself: arrows move, Up recalls history, Ctrl-D on a non-empty line deletes instead of
sending half of it, and a line is as long as memory allows. `--history FILE` keeps the history
across sessions.

`input()` uses readline only when both stdin and stdout are terminals; with stdout redirected the
terminal stays canonical, so we say once that lines are cut at 4,095 bytes there (`--raw`, or
piping the input, has no such limit).

While the prompt waits, a thread watches the socket: the server closing it, or sending bytes that
answer nothing, interrupts the prompt at once (a signal to the main thread, which readline handles
by restoring the terminal) instead of at the next message. The note costs one thread asleep in
select() and no traffic.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time

from iomodels.client.errors import ReplyError

PROMPT = ">>: "
HISTORY_LENGTH = 1000
CANONICAL_LINE_LIMIT = 4095


def typed_lines(sock: socket.socket, history: str | None):
    """Yield each line typed at the terminal (as bytes) until Ctrl-D on an empty line."""
    edited = sys.stdout.isatty()
    if edited:
        _enable_readline(history)
    else:
        print(f"iomodels client: stdout is not a terminal, so lines typed are cut at {CANONICAL_LINE_LIMIT} bytes "
              "by the terminal; pipe the input instead for longer ones", file=sys.stderr)
    watch = _ServerWatch(sock)
    try:
        while True:
            try:
                with watch:
                    line = input(PROMPT)
            except EOFError:
                print()
                return
            yield os.fsencode(line)
    finally:
        watch.close()


def _enable_readline(history: str | None) -> None:
    try:
        import readline
    except ImportError:  # a Python built without it: the terminal's own editing, and its limit
        print(f"iomodels client: no readline here: no line editing, lines cut at {CANONICAL_LINE_LIMIT} bytes",
              file=sys.stderr)
        return
    readline.set_history_length(HISTORY_LENGTH)
    readline.parse_and_bind("tab: self-insert")  # a tab is data here, not a request to complete
    if history:
        with contextlib.suppress(FileNotFoundError):
            readline.read_history_file(history)
        import atexit
        atexit.register(_save_history, readline, history)


def _save_history(readline, path: str) -> None:
    try:
        readline.write_history_file(path)
    except OSError as exc:
        print(f"iomodels client: cannot save the history to {path}: {exc.strerror}", file=sys.stderr)


class _ServerWatch:
    """While entered (the prompt waits), report the server closing or talking out of turn."""

    SIGNAL = signal.SIGUSR1

    def __init__(self, sock: socket.socket):
        # A socket object of its own on the same connection: Python's timeout is per object, and a
        # recv on an object with a timeout waits for data first, MSG_DONTWAIT or not.
        self.sock = socket.socket(fileno=os.dup(sock.fileno()))
        self.armed = threading.Event()
        self.problem: Exception | None = None
        self._wake_read, self._wake_write = os.pipe()
        self._closed = False
        signal.signal(self.SIGNAL, self._interrupt)
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="server-watch", daemon=True)
        self._thread.start()

    def __enter__(self):
        if self.problem:
            raise self.problem
        self.armed.set()
        os.write(self._wake_write, b"!")

    def __exit__(self, *exc):
        self.armed.clear()
        os.write(self._wake_write, b"!")

    def _interrupt(self, signum, frame):
        if self.problem and self.armed.is_set():
            raise self.problem

    def _watch(self) -> None:
        while not self._closed:
            watched = [self._wake_read, self.sock] if self.armed.is_set() else [self._wake_read]
            readable, _, _ = select.select(watched, [], [])
            if self._wake_read in readable:
                os.read(self._wake_read, 64)
                continue
            try:
                waiting = self.sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError as exc:
                waiting, failure = None, exc
            if not self.armed.is_set():
                continue  # a request went out meanwhile: what arrived is its reply, not ours to judge
            if waiting is None and isinstance(failure, ConnectionResetError):
                self.problem = ConnectionResetError("the server reset the connection (while waiting for input)")
            elif waiting is None:
                self.problem = ConnectionResetError(f"while waiting for input: {failure.strerror or failure}")
            elif not waiting:
                self.problem = ConnectionResetError("the server closed the connection (while waiting for input)")
            else:
                self.problem = ReplyError(f"the server sent {len(waiting)} bytes that answer no request "
                                          f"(while waiting for input): {waiting!r}")
            # Again until the prompt gives way: a signal that lands just before readline blocks in
            # select() is handled only at the next key, so one alone can be missed.
            while self.armed.is_set() and not self._closed:
                signal.pthread_kill(self._main, self.SIGNAL)
                time.sleep(0.1)
            return

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"!")
        self._thread.join(1)
        self.sock.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
