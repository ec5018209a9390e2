"""`iomodels bench`'s flags and outputs: units, wrk habits, --hdr-log, --csv, --json, Ctrl-C,
wrong servers, --connect-rate, --allow-remote (argument parsing only: nothing leaves loopback)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from iomodels.bench.errors import UsageError
from iomodels.bench.histogram import DIGITS, HIGHEST_NS, LOWEST_NS
from iomodels.bench.runner import check_target
from iomodels.units import parse_bytes, parse_count, parse_seconds
from tests import support
from tests.faulty import FaultyServer, no_uppercase

SHORT = ["--duration", "1.2s", "-w", "100ms", "-c", "2"]


def bench_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iomodels", "bench", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("text, value", [("64", 64), ("4K", 4096), ("4k", 4096), ("64KiB", 65536), ("1M", 1 << 20),
                                         ("2kb", 2048)])
def test_sizes_take_binary_suffixes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text, value", [("10", 10.0), ("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), ("1.5h", 5400.0)])
def test_durations_take_suffixes(text, value):
    assert parse_seconds(text) == value


@pytest.mark.parametrize("text, value", [("20000", 20000), ("20k", 20000), ("1.5M", 1.5e6)])
def test_rates_take_decimal_suffixes(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("parse, bad", [(parse_bytes, "4Q"), (parse_bytes, "1.5"), (parse_bytes, ""),
                                        (parse_seconds, "10 parsecs"), (parse_seconds, "-1s"), (parse_count, "k")])
def test_bad_units_are_refused(parse, bad):
    with pytest.raises(ValueError):
        parse(bad)


@pytest.mark.parametrize("args, fragment", [
    (("-d", "30"), "--duration 30s"),
    (("-t", "4"), "--workers N"),
    (("--duration", "ten"), "not a duration"),
    (("--duration", "2h"), "up to 3600"),
    (("--rate", "fast"), "not a number"),
    (("-c", "1.5k2"), "not a number"),
    (("--idle", "0.5"), "whole number"),
    (("--rate", "0"), "above 0"),
    (("--size", "4Q"), "--size"),
    (("--size", "8K-4K"), "--size"),
    (("--connect-rate", "100", "--pipeline", "4"), "--connect-rate"),
    (("--hdr-log", "/nonexistent-dir/x.hlog"), "cannot write"),
    (("--csv", "/nonexistent-dir/x.csv"), "cannot write"),
    (("--rate", "2k", "--pipeline", "8"), "--rate is an open loop"),
    (("--size", "-5"), "not a size: '-5'"),
    (("--size", "64-"), "not a size: '64-'"),
])
def test_bad_flags_are_one_line_and_status_2(args, fragment):
    done = bench_cli("127.0.0.1:9", *args)
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_size_error_names_the_flag_once():
    done = bench_cli("127.0.0.1:9", "--size", "17M")
    assert done.returncode == 2 and done.stderr.count("--size") == 1, done.stderr


def test_a_refused_command_creates_no_output_file(tmp_path):
    log, series = tmp_path / "x.hlog", tmp_path / "x.csv"
    done = bench_cli("127.0.0.1:9", "--hdr-log", str(log), "--csv", str(series), "--pipeline", "0")
    assert done.returncode == 2 and not log.exists() and not series.exists()


def test_the_version_is_printed():
    done = subprocess.run([sys.executable, "-m", "iomodels", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("iomodels ")


def test_help_says_what_a_latency_is_at_depth():
    text = " ".join(bench_cli("--help").stdout.split())
    assert "What a latency is" in text and "completed its reply" in text


def test_hdr_log_csv_and_json_carry_the_same_run(tmp_path):
    log, series = tmp_path / "run.hlog", tmp_path / "run.csv"
    with FaultyServer() as server:
        done = bench_cli(f"127.0.0.1:{server.port}", *SHORT, "--size", "1K", "--pipeline", "4",
                         "--hdr-log", str(log), "--csv", str(series), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    reader = HistogramLogReader(str(log), HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS))
    logged = []
    while (interval := reader.get_next_interval_histogram()) is not None:
        logged.append(interval.get_total_count())
    reader.close()
    with open(series) as f:
        rows = list(csv.DictReader(f))
    assert sum(logged) == sum(int(row["requests"]) for row in rows) == report["requests"] > 0
    assert len(logged) == len(rows) == len(report["intervals"]) == 2  # 1 s, then the last 0.2 s
    assert {"requests_per_s", "errors", "p50_us", "p99_us"} <= set(rows[0])
    assert report["latency_spectrum_us"][-1]["percentile"] == 100.0
    about = report["about"]
    assert about["version"] and about["time"] and about["machine"]["cpus"] and about["options"]["pipeline"] == 4
    assert about["options"]["size"] == "1024" and report["size"] == 1024
    assert about["command"][:2] == ["iomodels", "bench"] and "--hdr-log" in about["command"]
    assert about["options"]["allow_remote"] is False and about["options"]["server_pid"] is None
    with open(log) as f:  # the max column in ms, as HdrHistogram's Java writer has it, not floored
        maxima = [float(line.split(",")[2]) for line in f if line[0].isdigit()]
    assert len(maxima) == 2 and min(maxima) > 0
    assert max(maxima) == pytest.approx(report["latency_us"]["max"] / 1000, abs=0.0006)  # both rounded


def test_a_plain_echo_server_gets_one_clear_note_and_never_more_mismatches_than_requests():
    with FaultyServer(no_uppercase) as server:
        done = bench_cli(f"127.0.0.1:{server.port}", *SHORT, "--pipeline", "8", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert 0 < report["mismatches"] <= report["requests"]
    assert report["warmup_mismatches"] <= report["warmup_requests"]
    assert re.fullmatch(r"connection \d+, request \d+, byte \d+: expected '(.)' \(0x[0-9a-f]{2}\), got '(.)' "
                        r"\(0x[0-9a-f]{2}\)", report["first_mismatch"]), report["first_mismatch"]
    notes = [line for line in done.stderr.splitlines() if "not the request uppercased" in line]
    assert len(notes) == 1 and "is this an uppercase-echo server?" in notes[0]


def test_a_server_that_speaks_first_is_a_counted_protocol_error_without_traceback():
    with FaultyServer(greeting=b"220 hello\r\n") as server:
        done = bench_cli(f"127.0.0.1:{server.port}", *SHORT, "--idle", "1", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    assert report["protocol_errors"] == 3  # two active connections and one idle
    assert "before it was sent anything" in done.stderr


def test_ctrl_c_prints_partial_results_and_exits_130():
    with FaultyServer() as server:
        process = subprocess.Popen([sys.executable, "-m", "iomodels", "bench", f"127.0.0.1:{server.port}", "-c", "2",
                                    "-w", "0", "--duration", "60s", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Measuring from the first request (-w 0): interrupt once the server has seen a few.
        assert support.wait_until(lambda: server.received > 64 * 100, timeout=60)
        out, err = support.interrupt(process)
    assert process.returncode == 130, err
    report = json.loads(out)
    assert report["partial"] is True and "PARTIAL" in err


def _interruptible(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iomodels", "bench", f"127.0.0.1:{port}", "-c", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_reports_the_window_it_measured_and_a_second_one_loses_nothing(tmp_path):
    with FaultyServer() as server:
        process = _interruptible(server.port, "-w", "0", "--duration", "60s", "--json", "--csv",
                                 str(tmp_path / "x.csv"))
        assert support.wait_until(lambda: server.received > 64 * 100, timeout=60)
        process.send_signal(signal.SIGINT)  # an impatient user: twice
        out, err = support.interrupt(process)
    assert process.returncode == 130, err
    report = json.loads(out)
    assert report["partial"] is True and report["requests"] > 0 and "PARTIAL" in err
    assert 0 < report["duration_s"] < 60 and report["about"]["options"]["duration"] == 60
    assert (tmp_path / "x.csv").exists()


def test_ctrl_c_in_the_warm_up_says_so_and_writes_no_file(tmp_path):
    log = tmp_path / "x.hlog"
    with FaultyServer() as server:
        process = _interruptible(server.port, "-w", "60s", "--duration", "1s", "--hdr-log", str(log))
        assert support.wait_until(lambda: server.received > 64 * 100, timeout=60)
        out, err = support.interrupt(process)
    assert process.returncode == 130, err
    assert "during the warm-up: nothing was measured" in err and "is the server answering" not in err
    assert "no --hdr-log or --csv written" in err and not log.exists()


def test_connect_rate_churns_connections():
    with FaultyServer() as server:
        done = bench_cli(f"127.0.0.1:{server.port}", "--connect-rate", "200", "--duration", "1s", "-w", "0",
                         "--json")
        table = bench_cli(f"127.0.0.1:{server.port}", "--connect-rate", "200", "--duration", "0.3s", "-w", "0")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["connect_per_request"] is True and report["rate"] == 200 and report["requests"] > 0
    assert "connect per request, 200 new connections/s" in " ".join(table.stdout.split())


def test_remote_targets_need_allow_remote():
    # Argument checks only: check_target resolves the address and sends nothing.
    with pytest.raises(UsageError, match="--allow-remote"):
        check_target("10.1.2.3", 80, allow_remote=False)
    address, warning = check_target("10.1.2.3", 80, allow_remote=True)
    assert address == "10.1.2.3" and "another machine" in warning
    assert check_target("127.0.0.1", 80, allow_remote=False) == ("127.0.0.1", None)


def test_the_api_lets_ctrl_c_through_unless_asked_to_keep_partial_results():
    # The lab relies on it: Ctrl-C during one of its loads must stop the lab, not just that load.
    from iomodels import bench
    with FaultyServer() as server:
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                bench.run("127.0.0.1", server.port, connections=2, duration=30, warmup=0)
        finally:
            timer.cancel()


def test_connect_per_request_names_the_first_mismatch_too():
    with FaultyServer(no_uppercase) as server:
        result_json = bench_cli(f"127.0.0.1:{server.port}", "--connect-per-request", "--duration", "0.5s", "-w", "0",
                                "--json")
    report = json.loads(result_json.stdout)
    assert 0 < report["mismatches"] <= report["requests"] and ", request 1, byte " in report["first_mismatch"]


def test_the_table_of_a_wrong_server_does_not_look_normal():
    with FaultyServer(no_uppercase) as server:
        done = bench_cli(f"127.0.0.1:{server.port}", *SHORT)
    assert done.returncode == 1 and "WRONG REPLIES" in done.stdout


def test_connection_counts_take_suffixes():
    from iomodels.cli import build_parser
    args = build_parser().parse_args(["bench", "127.0.0.1:9", "-c", "1k", "--idle", "10k", "--size", "4K-64K",
                                      "--duration", "1m", "-R", "20k"])
    assert (args.connections, args.idle, args.duration, args.rate) == (1000, 10_000, 60.0, 20_000)
    assert (args.size.low, args.size.high) == (4096, 65536)


def test_an_http_server_is_named_as_not_an_uppercase_echo_server():
    def http(data: bytes) -> bytes:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" * 2
    with FaultyServer(http) as server:
        done = bench_cli(f"127.0.0.1:{server.port}", *SHORT, "--json")
    report = json.loads(done.stdout)
    wrong, replies = (report["mismatches"] + report["warmup_mismatches"],
                      report["requests"] + report["warmup_requests"])
    assert done.returncode == 1 and 0 < wrong <= replies and report["protocol_errors"]
    assert "got 'H' (0x48)" in report["first_mismatch"] and "is this an uppercase-echo server?" in done.stderr
