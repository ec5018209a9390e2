"""What tests share: starting servers as real processes (always stopped by PID) and talking to them.

A server runs as `python -m iomodels serve --port 0 ...` in its own process; the test reads the
`listening on HOST:PORT (model NAME)` line to learn the port. Whatever happens in the test, the
fixture stops it by PID (SIGTERM, then SIGKILL), checks it exited 0 and logged no traceback, and
that it left no child process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

from iomodels import models

READY = re.compile(rb"listening on ([\d.]+):(\d+) \(model (\S+)\)")
ALL_MODELS = models.names()
CONCURRENT_MODELS = [name for name in ALL_MODELS if models.info(name).concurrent]


def skip_reason(model: str) -> str | None:
    return models.unavailable_reason(model)


class RunningServer:
    def __init__(self, proc: subprocess.Popen, host: str, port: int, model: str, stderr_file):
        self.proc = proc
        self.host = host
        self.port = port
        self.model = model
        self._stderr_file = stderr_file
        self.process = psutil.Process(proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def connect(self, **kwargs) -> socket.socket:
        return connect(self.address, **kwargs)

    def stderr(self) -> str:
        self._stderr_file.flush()
        with open(self._stderr_file.name, errors="replace") as f:
            return f.read()

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return self.process.children(recursive=True)
        return []

    def num_fds(self) -> int:
        return self.process.num_fds()

    def num_threads(self) -> int:
        return self.process.num_threads()

    def rss(self) -> int:
        """Resident memory of the server and all its children, in bytes."""
        total = 0
        for proc in [self.process, *self.descendants()]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server by PID and wait for it; SIGKILL it if it does not exit in time."""
        children = self.descendants()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # PYTHONFAULTHANDLER (start_command) makes SIGABRT print every thread's stack.
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                raise AssertionError(f"{self.model} server did not exit {timeout}s after {signal.Signals(sig).name}; "
                                     f"its threads then:\n{self.stderr()[-6000:]}")
        gone, alive = psutil.wait_procs(children, timeout=5)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        assert not alive, f"{self.model} server left processes behind: {alive}"
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for child in self.descendants():
            with contextlib.suppress(psutil.Error):
                child.kill()


def _limit_nofile(limit: int):
    def preexec():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, min(limit, hard)))
    return preexec


def start_server(model: str, *args: str, nofile: int | None = None, ready_timeout: float = 20.0,
                 env: dict | None = None, prelude: str | None = None) -> RunningServer:
    """`prelude`: Python run in the server process before `iomodels serve` (fault injection)."""
    serve_args = ["serve", "--model", model, "--port", "0", *args]
    if prelude:
        main = "import sys\nfrom iomodels.cli import main\nraise SystemExit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", f"{prelude}\n{main}", *serve_args]
    else:
        cmd = [sys.executable, "-m", "iomodels", *serve_args]
    return start_command(cmd, model, nofile=nofile, ready_timeout=ready_timeout, env=env)


def start_command(cmd: list[str], name: str, nofile: int | None = None, ready_timeout: float = 20.0,
                  env: dict | None = None) -> RunningServer:
    """Start any server that prints the `listening on HOST:PORT (model NAME)` line when ready."""
    stderr_file = tempfile.NamedTemporaryFile("w+", prefix=f"iomodels-{name}-", suffix=".log")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, stdin=subprocess.DEVNULL,
                            preexec_fn=_limit_nofile(nofile) if nofile else None,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})})
    deadline = time.monotonic() + ready_timeout
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    match = READY.search(line)
    if not match:
        proc.kill()
        proc.wait()
        stderr_file.seek(0)
        raise AssertionError(f"server {cmd} did not become ready: stdout={line!r} stderr={stderr_file.read()!r}")
    return RunningServer(proc, match.group(1).decode(), int(match.group(2)), name, stderr_file)


def connect(address, rcvbuf: int | None = None, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
    import threading

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
from iomodels import core
def _failing(method):
    def patched(self, data):
        if {marker!r} in data:
            raise RuntimeError({message!r})
        return method(self, data)
    return patched
core.EchoSession.receive_data = _failing(core.EchoSession.receive_data)
core.EchoSession.reply_to = _failing(core.EchoSession.reply_to)
"""
