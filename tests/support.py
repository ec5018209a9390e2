"""What tests share: starting servers as real processes (always stopped by PID) and talking to them.

A server runs as `python -m iomodels serve --port 0 ...` in its own process, started through the
project's one launcher (iomodels/launcher.py), which reads its ready line. Whatever happens in the
test, the fixture stops it by PID (SIGTERM, then SIGKILL), checks it exited 0 and logged no
traceback, and that it left no child process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

from iomodels.launcher import ServerFailed, ServerProcess, serve_command
from iomodels.serving import models

ALL_MODELS = models.names()
CONCURRENT_MODELS = [name for name in ALL_MODELS if models.info(name).concurrent]


def skip_reason(model: str) -> str | None:
    return models.unavailable_reason(model)


class RunningServer(ServerProcess):
    """A server under test: the launcher's process, plus what tests ask of it."""

    @property
    def model(self) -> str:
        return self.name

    def connect(self, **kwargs) -> socket.socket:
        return connect(self.address, **kwargs)

    def num_fds(self) -> int:
        return self.process.num_fds()

    def num_threads(self) -> int:
        return self.process.num_threads()

    def rss(self) -> int:
        """Resident memory of the server and all its children, in bytes."""
        total = 0
        for proc in [self.process, *self.descendants()]:
            with contextlib.suppress(Exception):
                total += proc.memory_info().rss
        return total


def start_server(model: str, *args: str, nofile: int | None = None, ready_timeout: float = 20.0,
                 env: dict | None = None, prelude: str | None = None) -> RunningServer:
    """`prelude`: Python run in the server process before `iomodels serve` (fault injection)."""
    cmd = serve_command(model, *args)
    if prelude:
        main = "import sys\nfrom iomodels.cli import main\nraise SystemExit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", f"{prelude}\n{main}", *cmd[3:]]
    return start_command(cmd, model, nofile=nofile, ready_timeout=ready_timeout, env=env)


def start_command(cmd: list[str], name: str, nofile: int | None = None, ready_timeout: float = 20.0,
                  env: dict | None = None) -> RunningServer:
    """Start any server that prints the ready line (see iomodels/launcher.py)."""
    try:
        return RunningServer(cmd, name, nofile=nofile, env=env, ready_timeout=ready_timeout)
    except ServerFailed as exc:
        raise AssertionError(f"server {cmd} did not become ready: {exc}") from None


def read_stats_file(path) -> dict:
    """The counters a server wrote to its `--stats-file` (at exit, or on SIGUSR1)."""
    with open(path) as f:
        return json.load(f)


def read_counters(server: ServerProcess, path) -> dict:
    """Ask a server started with `--stats-file path` for its counters now (SIGUSR1) and read them."""
    if os.path.exists(path):
        os.unlink(path)
    os.kill(server.pid, signal.SIGUSR1)
    assert wait_until(lambda: os.path.exists(path), timeout=10), "no stats file after SIGUSR1"
    return read_stats_file(path)


def connect(address, rcvbuf: int | None = None, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect(), so the TCP window is negotiated with it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def request(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return recv_exactly(sock, len(data))


def recv_until_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(1 << 16):
        data += chunk
    return bytes(data)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` passes (a bound, never an assertion on time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def is_closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the server closed `sock` (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange(sock: socket.socket, data: bytes, chunk: int = 1 << 16) -> bytes:
    """Send `data` from a thread while reading the reply here: a server with back-pressure stops
    reading from a client that sends everything before reading anything, so both must go at once."""
    errors = []

    def writer():
        try:
            view = memoryview(data)
            for start in range(0, len(view), chunk):
                sock.sendall(view[start:start + chunk])
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    reply = recv_exactly(sock, len(data))
    thread.join(10)
    assert not errors, errors
    return reply


def core_bug(marker: bytes, message: str) -> str:
    """Code that makes EchoSession raise RuntimeError(message) on data holding `marker`: a bug in
    the core, for a server started with it (`prelude=`, or a sitecustomize). Data enters the core
    through receive_data or reply_to (the short paths, and event loops whose transport keeps the
    output), so both are patched."""
    return f"""
from iomodels.serving import core
def _failing(method):
    def patched(self, data):
        if {marker!r} in data:
            raise RuntimeError({message!r})
        return method(self, data)
    return patched
core.EchoSession.receive_data = _failing(core.EchoSession.receive_data)
core.EchoSession.reply_to = _failing(core.EchoSession.reply_to)
"""


def models_where(**flags) -> list[str]:
    """The models whose ModelInfo has every given value, e.g. models_where(kind="readiness")."""
    return [name for name in ALL_MODELS
            if all(getattr(models.info(name), flag) == value for flag, value in flags.items())]


def variants(names: list[str]):
    """pytest params (model, flags), one per variant each model declares, with readable ids."""
    import pytest

    return [pytest.param(name, flags, id="-".join([name, *flags[1::2]]))
            for name in names for flags in models.info(name).variants]


def patched_env(tmp_path, code: str) -> dict:
    """Environment for a child Python that runs `code` at start-up (a sitecustomize module): for
    what must hold in a server process from its first line (a ring size, the collector off)."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def raise_own_fd_limit(wanted: int) -> None:
    """Let this test process hold `wanted` sockets (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def interrupt(process: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Ctrl-C a child (SIGINT) and collect its output; killed if it does not end within `timeout`."""
    try:
        process.send_signal(signal.SIGINT)
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
