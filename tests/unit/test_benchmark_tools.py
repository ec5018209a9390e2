"""The /proc CPU sampler (iomodels.procstats) and benchmarks/' ratio arithmetic (no benchmark is run)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from iomodels import procstats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
report = pytest.importorskip("report")


def test_the_sampler_sees_this_process_burn_cpu():
    with procstats.TreeSampler(os.getpid(), interval=0.02) as sampler:
        time.sleep(0.05)
        started, cpu_before = time.monotonic(), time.process_time()
        # Burn 0.3 s of CPU, however long a loaded machine takes to give it (bounded).
        while time.process_time() - cpu_before < 0.3 and time.monotonic() < started + 60:
            pass
        ended = time.monotonic()
        time.sleep(0.05)
    burnt = sampler.cpu_between(started, ended)
    assert 0.2 < burnt <= (ended - started) + 0.05  # one core at most, give or take a clock tick
    assert sampler.cpu_between(ended, started) == 0.0


def test_the_tree_holds_children():
    pid = os.fork()
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    try:
        assert {os.getpid(), pid} <= procstats.descendants(os.getpid())
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def _row(server, seq, cpu, rps=100.0, round_=0):
    return {"server": server, "connections": 100, "size": 64, "round": round_, "seq": seq,
            "cpu_per_request_us": cpu, "rps": rps}


def test_a_server_is_set_against_the_c_runs_that_bracket_it():
    rows = [_row("C epoll", 0, 4.0), _row("epoll", 1, 5.5), _row("C epoll", 2, 6.0), _row("poll", 3, 9.0),
            _row("C epoll", 4, 12.0)]
    assert report.ratios(rows, "epoll", report.C)[(100, 64, 1)] == [pytest.approx(5.5 / 5.0)]
    assert report.ratios(rows, "poll", report.C)[(100, 64, 1)] == [pytest.approx(9.0 / 9.0)]
    assert report.ratios(rows, "poll", "epoll")[(100, 64, 1)] == [pytest.approx(9.0 / 5.5)]
    assert report.ratios(rows, report.C, report.C)[(100, 64, 1)] == [1.0]


def test_ratios_are_taken_per_round_and_failed_runs_are_left_out():
    rows = [_row("C epoll", 0, 5.0), _row("epoll", 1, 5.5), _row("C epoll", 2, 5.0),
            _row("C epoll", 0, 10.0, round_=1), _row("epoll", 1, 12.0, round_=1), _row("C epoll", 2, 10.0, round_=1),
            {"server": "epoll", "connections": 100, "size": 64, "round": 2, "seq": 1, "failed": "did not start"}]
    assert sorted(report.ratios(rows, "epoll", report.C)[(100, 64, 1)]) == [pytest.approx(1.1), pytest.approx(1.2)]
