"""`iomodels client` as a user meets it: typed at a terminal (a real pseudo-terminal), piped, raw,
against servers that fail or lie. Every wait is bounded; nothing asserts a duration."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests import support
from tests.faulty import FaultyServer

IOMODELS = [sys.executable, "-m", "iomodels"]
LEFT, UP, CTRL_C, CTRL_D = b"\x1b[D", b"\x1b[A", b"\x03", b"\x04"


class Terminal:
    """A command run on a pseudo-terminal, driven as a person would type (pexpect in 40 lines)."""

    def __init__(self, *args: str, timeout: float = 20.0):
        self.timeout = timeout
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its stdin, stdout and stderr are the terminal
            os.environ["TERM"] = "xterm"
            os.execv(sys.executable, [*IOMODELS, *args])
        os.set_blocking(self.fd, False)
        self.output = b""

    def _read(self, wait: float) -> bool:
        if select.select([self.fd], [], [], wait)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                return False
            self.output += chunk
            return bool(chunk)
        return True

    def expect(self, needle: bytes) -> None:
        deadline = time.monotonic() + self.timeout
        while needle not in self.output and time.monotonic() < deadline:
            if not self._read(0.1):
                break
        assert needle in self.output, f"{needle[:80]!r} never came; the terminal shows {self.output[-600:]!r}"

    def type(self, keys: bytes) -> None:
        """Write keys while reading what the terminal echoes, so neither side blocks the other."""
        deadline = time.monotonic() + self.timeout
        while keys and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                keys = keys[os.write(self.fd, keys[:512]):]
            self._read(0.01)

    def exit_status(self) -> int:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"the client did not exit; the terminal shows {self.output[-600:]!r}")

    def close(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal():
    opened = []

    def start(*args: str) -> Terminal:
        opened.append(Terminal(*args))
        opened[-1].expect(b">>: ")
        return opened[-1]

    yield start
    for term in opened:
        term.close()


@pytest.fixture
def server(serve):
    return serve("threaded")


def client_at(server) -> str:
    return f"127.0.0.1:{server.port}"


def test_prompt_like_the_tutorial(server, terminal):
    term = terminal("client", client_at(server))  # waits for the `>>: ` prompt
    term.type(b"hello tutorial\r")
    term.expect(b"HELLO TUTORIAL\r\n>>: ")
    term.type(CTRL_D)
    assert term.exit_status() == 0


def test_arrow_keys_edit_the_line(server, terminal):
    term = terminal("client", client_at(server))
    term.type(b"abc" + LEFT + LEFT + b"X\r")  # before: sent 'abc\x1b[D\x1b[DX'
    term.expect(b"AXBC\r\n>>: ")
    assert b"\x1b[D" not in term.output.split(b"AXBC")[1]
    term.type(b"a\tb\r")  # a tab is data, not completion
    term.expect(b"A\tB\r\n")


def test_up_recalls_the_last_line_and_history_file_keeps_it(server, terminal, tmp_path):
    history = tmp_path / "history"
    term = terminal("client", client_at(server), "--history", str(history))
    term.type(b"first line\r")
    term.expect(b"FIRST LINE\r\n>>: ")  # typing before the prompt would reach the terminal unedited
    term.type(UP + b"\r")
    term.expect(b"FIRST LINE\r\n>>: first line\r\nFIRST LINE\r\n>>: ")
    term.type(CTRL_D)
    assert term.exit_status() == 0
    assert "first line" in history.read_text()


def test_a_long_line_is_sent_whole(server, terminal):
    term = terminal("client", client_at(server))
    term.type(b"x" * 5000 + b"\r")  # before: 4,095 came back, the terminal's canonical limit
    term.expect(b"X" * 5000 + b"\r\n>>: ")
    term.type(b"after\r")
    term.expect(b"AFTER")


def test_ctrl_d_mid_line_keeps_the_line(server, terminal):
    term = terminal("client", client_at(server))
    term.type(b"abc" + CTRL_D + b"\r")  # before: 'AB' came back
    term.expect(b"ABC\r\n>>: ")
    term.type(CTRL_D)  # on an empty line: the end
    assert term.exit_status() == 0


def test_ctrl_c_exits_130(server, terminal):
    term = terminal("client", client_at(server))
    term.type(b"half typed" + CTRL_C)
    assert term.exit_status() == 130


def test_server_going_away_is_noticed_at_the_prompt(serve, terminal):
    server = serve("threaded")
    term = terminal("client", client_at(server))
    term.type(b"hello\r")
    term.expect(b"HELLO")
    server.stop()  # before: noticed only at the next message
    # Closed, or reset at the end of the drain: either way it is said at once, in one line.
    term.expect(b"the connection (while waiting for input)")
    assert b"the server closed" in term.output or b"the server reset" in term.output
    assert term.exit_status() == 1


def test_unsolicited_bytes_at_the_prompt_are_an_error(terminal):
    with FaultyServer(greeting=b"hello?") as rogue:
        term = terminal("client", f"127.0.0.1:{rogue.port}")
        term.expect(b"bytes that answer no request")
        assert term.exit_status() == 1


def run_client(*args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*IOMODELS, "client", *args], input=stdin, capture_output=True, timeout=timeout)


def test_piped_lines_keep_their_bytes(server):
    result = run_client(client_at(server), stdin=b"caf\xc3\xa9 \xff\xfe bad utf-8\n\nend\r\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"CAF\xc3\xa9 \xff\xfe BAD UTF-8\nEND\n"  # before: U+FFFD for each bad byte


def test_raw_passes_every_byte_through(server):
    data = bytes(range(256)) * 2048 + b"\n\n\r\n no newline at the end"
    result = run_client(client_at(server), "--raw", stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data.upper()


def test_closed_stdout_ends_quietly_with_141(server):
    shell = f"seq 1 100000 | {' '.join(IOMODELS)} client {client_at(server)} | head -2; exit ${{PIPESTATUS[1]}}"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert result.stdout == "1\n2\n"
    assert result.stderr == ""  # before: "...: Broken pipe", blamed on the server
    assert result.returncode == 141


def test_timeout_bounds_the_whole_reply():
    with FaultyServer(byte_delay=0.2) as trickle:  # 40 bytes at 1 byte per 0.2 s
        result = run_client(f"127.0.0.1:{trickle.port}", "--timeout", "1", "--message", "x" * 40)
    assert result.returncode == 1  # before: exit 0 after the whole trickle
    assert b"no whole reply within 1 s" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("rogue, stdin, says", [
    (dict(reply=lambda data: data), b"lower\n", b"not the request uppercased: byte 0 is 0x6c, expected 0x4c"),
    (dict(reply=lambda data: data.upper() + b"!"), b"one\ntwo\n", b"answer no request"),
    (dict(greeting=b"unasked"), b"one\n", b""),
])
def test_a_wrong_reply_is_one_line_and_status_1(rogue, stdin, says):
    with FaultyServer(**rogue) as server:
        result = run_client(f"127.0.0.1:{server.port}", stdin=stdin)
    assert result.returncode == 1, result
    assert says in result.stderr and len(result.stderr.splitlines()) == 1
    assert b"Traceback" not in result.stderr
