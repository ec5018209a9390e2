"""Run a server under strace and read back what it wrote.

strace stops the traced process at every system call (ptrace), so it sees each call from the
kernel's side: its arguments, its result (a byte count, an errno name), when it started (`-ttt`:
epoch seconds with microseconds, the clock of the client's `time.time()`) and how long it took
(`-T`). `-f` follows the server's threads and forked children, each line then starting with the
thread's id (the lane); `-yy` writes each descriptor with what it is, so a connected socket reads
`7<TCP:[127.0.0.1:40000->127.0.0.1:51234]>` and the client's port picks out the calls of its own
connection.

The server is started through the project's one launcher: the command is simply strace's, with
`iomodels serve ...` after it; the ready line still comes on stdout, since strace writes to a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile

from iomodels.launcher import ServerFailed, ServerProcess, serve_command

INSTALL_HINT = "apt-get install strace"
# Enough to see every model's waits and copies, and the threads and processes they run in; Python's
# own futex traffic (the GIL) stays out, which keeps the trace and its overhead small.
TRACED = "trace=%net,%desc,%process,rt_sigtimedwait,io_uring_enter,io_uring_setup,io_uring_register"
FLAGS = ("-f", "--seccomp-bpf", "-ttt", "-T", "-yy", "-qq", "-s", "32", "-e", TRACED)


class TraceError(RuntimeError):
    """The trace could not be taken: the message is the one line the user sees."""


@dataclasses.dataclass
class Syscall:
    lane: int          # thread (or process) id
    call: str          # as strace spells it
    start: float       # epoch seconds
    duration: float    # seconds (-T); 0 when strace could not tell
    args: str
    result: str        # "5", "EAGAIN", "0", "?"
    value: int | None  # the return value as a number, None for an error or "?"
    returned: str = ""  # the result as strace wrote it ("7<TCP:[...]>", "-1 EAGAIN (...)")

    @property
    def end(self) -> float:
        return self.start + self.duration


def strace_path() -> str | None:
    return shutil.which("strace")


def check_tracer() -> str:
    """strace's path, or TraceError saying what is missing and how to add it / why it cannot attach."""
    path = strace_path()
    if path is None:
        raise TraceError(f"strace is not installed (needed to trace system calls); add it with: {INSTALL_HINT}")
    probe = subprocess.run([path, "-qq", "-e", "trace=none", "true"], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {probe.returncode}"
        raise TraceError(f"strace cannot trace here ({why}); ptrace is disabled or not permitted "
                         "(see /proc/sys/kernel/yama/ptrace_scope; a container needs CAP_SYS_PTRACE)")
    return path


class Traced:
    """A server running under strace; `finish()` stops it and returns the calls it made."""

    def __init__(self, server: ServerProcess, out: str):
        self.server = server
        self._out = out
        self._calls: list[Syscall] | None = None

    def finish(self) -> list[Syscall]:
        if self._calls is None:
            _stop(self.server)
            self._calls = read(self._out)
        return self._calls


@contextlib.contextmanager
def traced_server(model: str, *flags: str):
    """Yield a `Traced` server; it is always stopped (by PID) when the block exits."""
    path = check_tracer()
    with tempfile.TemporaryDirectory(prefix=f"iomodels-trace-{model}-") as tmp:
        out = os.path.join(tmp, "strace.txt")
        cmd = [path, *FLAGS, "-o", out, *serve_command(model, "--log-level", "warning", *flags)]
        try:
            server = ServerProcess(cmd, f"{model} (traced)", new_session=True, ready_timeout=60)
        except ServerFailed as exc:
            raise TraceError(str(exc)) from None
        traced = Traced(server, out)
        try:
            yield traced
        finally:
            traced.finish()


def _stop(server: ServerProcess) -> None:
    """SIGTERM the traced server (strace's child), so it shuts down as usual and strace follows it out."""
    if server.alive():
        for child in server.process.children():  # strace's child is the server (its children are its own)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(20)
    server.stop(timeout=10, check=False)


# 1234 1700000000.123456 recvfrom(7<TCP:[...]>, "hello", 65536, 0, NULL, NULL) = 5 <0.000011>
LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
DONE = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.+?)(?:\s+<(\d+\.\d+)>)?$")
UNFINISHED = re.compile(r"^(\w+)\((.*?)\s*<unfinished \.\.\.>$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(.+?)(?:\s+<(\d+\.\d+)>)?$")
RESULT = re.compile(r"^(-?\d+|0x[0-9a-f]+|\?)(?:\s+(E[A-Z0-9]+)\b)?")


def parse(text: str) -> list[Syscall]:
    """strace -f -ttt -T output -> calls in order of their start; a call split by another thread's
    (`<unfinished ...>` then `<... recv resumed>`) is joined; signals and exits are left out."""
    calls: list[Syscall] = []
    pending: dict[int, tuple[str, float, str]] = {}
    for raw in text.splitlines():
        match = LINE.match(raw)
        if not match:
            continue
        lane, start, rest = int(match.group(1)), float(match.group(2)), match.group(3)
        if done := DONE.match(rest):
            call, args, result, duration = done.groups()
        elif unfinished := UNFINISHED.match(rest):
            pending[lane] = (unfinished.group(1), start, unfinished.group(2))
            continue
        elif resumed := RESUMED.match(rest):
            call, tail, result, duration = resumed.groups()
            if lane not in pending:
                continue
            _, start, head = pending.pop(lane)
            args = head + tail
        else:
            continue  # --- SIGIO ---, +++ exited +++, a call interrupted by the end of the trace
        calls.append(_syscall(lane, call, start, duration, args, result))
    calls.sort(key=lambda c: c.start)
    return calls


def _syscall(lane, call, start, duration, args, result) -> Syscall:
    match = RESULT.match(result.strip())
    value, errno_name = (match.group(1), match.group(2)) if match else ("?", None)
    number = None if errno_name or value == "?" else int(value, 0)
    return Syscall(lane=lane, call=call, start=start, duration=float(duration or 0.0), args=args,
                   result=errno_name or value, value=number, returned=result)


def read(path: str) -> list[Syscall]:
    with open(path, errors="replace") as f:
        return parse(f.read())
