"""The bundled Locust user class, run by Locust itself against one of our servers (loopback only).

Locust is never imported here: it monkey-patches the standard library with gevent at import, which
the rest of the suite must not inherit. It runs as `locust -f "$(iomodels locustfile)"` in a subprocess.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iomodels.bench.blocking import TargetError, describe_mismatch, parse_target

LOCUST = shutil.which("locust", path=os.path.dirname(sys.executable))
needs_locust = pytest.mark.skipif(LOCUST is None, reason="locust is not installed (pip install 'iomodels[locust]')")
MERGED = re.compile(r"iomodels locust: requests=(\d+) p50_us=([\d.]+) p90_us=([\d.]+) p99_us=([\d.]+) "
                    r"p999_us=([\d.]+) max_us=([\d.]+)")


def locustfile() -> str:
    done = subprocess.run([sys.executable, "-m", "iomodels", "locustfile"], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_the_locustfile_command_prints_a_file_that_exists():
    path = Path(locustfile())
    assert path.is_file() and path.name == "locustfile.py" and "class EchoUser" in path.read_text()


def test_the_locustfile_imports_no_event_loop_and_no_server():
    code = (f"import runpy, sys; runpy.run_path({locustfile()!r}); "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'uvloop' or m.startswith('iomodels.serving') "
            "or m == 'iomodels.bench.connection']; print(bad)")
    if LOCUST is None:
        pytest.skip("locust is not installed")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@needs_locust
def test_two_processes_merge_exact_counts_and_percentiles(serve, tmp_path):
    stats = tmp_path / "stats.json"
    server = serve("epoll", "--stats-file", str(stats))
    server.stats_path = str(stats)
    done = subprocess.run(
        [LOCUST, "-f", locustfile(), "--headless", "--processes", "2", "-u", "10", "-r", "10", "-t", "8s",
         "--csv", str(tmp_path / "run"), "--host", f"127.0.0.1:{server.port}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    match = MERGED.search(output)
    assert match, output[-3000:]
    merged = int(match.group(1))
    p50, p90, p99, p999, top = (float(v) for v in match.groups()[1:])
    assert 0 < p50 <= p90 <= p99 <= p999 <= top
    with open(tmp_path / "run_stats.csv") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    assert int(total["Failure Count"]) == 0
    assert int(total["Request Count"]) == merged > 0
    counters = server.counters()
    # 64-byte messages: every request Locust counted was answered by the server. Users finish the
    # request they are in when the test stops, but with --processes Locust's quit can still drop a
    # user's last one, answered by the server and counted by nobody (seen: 5 of 478,660, once in 7
    # runs): at most one per user.
    answered = counters["bytes_in"] // 64
    assert counters["bytes_in"] == counters["bytes_out"] == answered * 64
    assert merged <= answered <= merged + 10


@pytest.mark.parametrize("host, fragment", [
    ("10.1.2.3:80", "--allow-remote"), ("127.0.0.1", "HOST:PORT"), ("127.0.0.1:0", "HOST:PORT"), ("", "no target"),
])
def test_the_locustfile_refuses_bad_targets(host, fragment):
    with pytest.raises(TargetError, match=fragment):
        parse_target(host, allow_remote=False)


def test_allow_remote_accepts_a_remote_target_with_a_warning():
    # Parsing only: nothing is sent anywhere.
    address, port, warning = parse_target("10.1.2.3:80", allow_remote=True)
    assert (address, port) == ("10.1.2.3", 80) and "another machine" in warning
    assert parse_target("tcp://127.0.0.1:9000", allow_remote=False) == ("127.0.0.1", 9000, None)


@needs_locust
def test_locust_takes_the_added_options(tmp_path):
    # No user is started (-u 0), and the host is loopback: nothing is sent anywhere.
    base = [LOCUST, "-f", locustfile(), "--headless", "-u", "0", "-t", "1s"]
    done = subprocess.run([*base, "--allow-remote", "--echo-size", "4K", "--echo-timeout", "2",
                           "--host", "127.0.0.1:9"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    bad = subprocess.run([*base, "--host", "127.0.0.1:notaport"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


def test_a_mismatch_names_its_first_wrong_byte():
    assert describe_mismatch(12, b"ABC", b"aBC") == "request 12, byte 0: expected 'A' (0x41), got 'a' (0x61)"
