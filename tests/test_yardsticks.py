"""The C yardsticks (benchmarks/c): they build from a clone, serve, load, and catch wrong replies."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from iomodels.launcher import ServerProcess
from tests import support
from tests.faulty import FaultyServer

SOURCE = Path(__file__).resolve().parent.parent / "benchmarks" / "c"

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc")),
                                reason="needs make and a C compiler")


@pytest.fixture(scope="module")
def yardsticks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("yardsticks")
    subprocess.run(["make", "-s", "-C", str(SOURCE), f"OUT={out}"], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture
def c_server(yardsticks):
    """Started as the Python models are: the launcher reads its ready line."""
    server = ServerProcess([str(yardsticks / "epoll_echo"), "--port", "0", "--lifetime", "120"], "c-epoll")
    yield server
    assert server.stop() == 0


def loadgen(yardsticks: Path, port: int, *flags: str) -> tuple[int, dict]:
    done = subprocess.run([str(yardsticks / "loadgen"), "-p", str(port), *flags], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def test_server_echoes_uppercase_byte_for_byte(c_server):
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value: only a-z change
    with support.connect(c_server.address) as sock:
        assert support.exchange(sock, payload) == payload.upper()
        assert support.request(sock, b"abc\xe9\xff{`@") == b"ABC\xe9\xff{`@"


def test_server_keeps_a_reply_it_could_not_send_at_once(c_server):
    """A client that sends 8 MiB before reading a byte: the server's sends fill the socket, it must
    keep the rest and stop reading until it is out, then answer everything in order."""
    payload = b"partial sends must keep their place " * ((8 << 20) // 36)
    with support.connect(c_server.address, rcvbuf=4096) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        reply = support.recv_exactly(sock, len(payload))
        sender.join(10)
    assert reply == payload.upper()


def test_port_file_and_ready_line_name_the_same_port(yardsticks, tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([str(yardsticks / "epoll_echo"), "--port", "0", "--port-file", str(port_file),
                             "--lifetime", "30"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(port_file.read_text())
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert line == f"listening on 127.0.0.1:{port} (model c-epoll)\n"


def test_loadgen_against_the_c_server_reports_json(yardsticks, c_server):
    status, result = loadgen(yardsticks, c_server.port, "-c", "4", "-s", "1000", "-d", "3", "-t", "0.5", "-w", "0.2",
                             "-j", "2", "-P", str(c_server.pid))
    assert status == 0, result
    assert result["requests"] > 0 and result["errors"] == result["mismatches"] == result["protocol_errors"] == 0
    for key in ("rps", "p50_us", "p99_us", "client_cpu_pct", "client_system_cpu_pct", "server_cpu_pct",
                "other_cpu_pct"):
        assert isinstance(result[key], float), key
    assert 0 <= result["client_system_cpu_pct"] <= result["client_cpu_pct"] + 0.1


def test_loadgen_against_a_python_model(yardsticks, serve):
    server = serve("epoll")
    status, result = loadgen(yardsticks, server.port, "-c", "2", "-s", "64", "-t", "0.5", "-w", "0")
    assert status == 0 and result["requests"] > 0 and result["mismatches"] == 0


@pytest.mark.parametrize("answer, counter", [
    (lambda data: data, "mismatches"),  # not uppercased
    (lambda data: data.upper() + b"!", "protocol_errors"),  # a byte nobody asked for
])
def test_loadgen_catches_a_wrong_server(yardsticks, answer, counter):
    server = FaultyServer(answer)
    try:
        status, result = loadgen(yardsticks, server.port, "-c", "1", "-s", "64", "-t", "0.3", "-w", "0")
    finally:
        server.close()
    assert status == 1 and result[counter] >= 1


def test_loadgen_refuses_a_remote_target_before_connecting(yardsticks):
    done = subprocess.run([str(yardsticks / "loadgen"), "-H", "192.0.2.1", "-p", "9"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 2 and "non-loopback" in done.stderr
