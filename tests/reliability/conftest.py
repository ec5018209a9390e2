"""Records each reliability test's outcome as a cell of the scenario x model matrix.

Every test here carries `@pytest.mark.scenario(N)`; the model comes from its `model` parameter,
or from `scenario(N, models=[...])` for a test that covers several models at once (a unit test of
code they share). A skip whose reason starts with "not applicable" is a cell the scenario does not
apply to; any other skip (io_uring forbidden on this machine, say) is reported as skipped.
Measurements a test makes go through pytest's own `record_property` and end up in the notes.

With `IOMODELS_RELIABILITY_JSON=PATH` in the environment, the session writes the cells to PATH;
`benchmarks/reliability_matrix.py` runs the suite that way and renders RELIABILITY.md from it.
"""

from __future__ import annotations

import json
import os
import platform
import time

import pytest

from tests.support import ALL_MODELS

ENV_RESULTS = "IOMODELS_RELIABILITY_JSON"
NOT_APPLICABLE = "not applicable"

SCENARIOS = {
    1: "EMFILE storm",
    2: "accept errno matrix",
    3: "clients that never read",
    4: "partial-write integrity",
    5: "idle connection",
    6: "slow drip (slowloris)",
    7: "peer reset mid-write",
    8: "SIGPIPE",
    9: "half-close",
    10: "SIGTERM drain",
    11: "fd >= 1024 for select",
    12: "churn and leaks",
    13: "io_uring unavailable",
    14: "a bug in the core",
    15: "fuzzing",
    16: "soak",
    17: "forking: children vs their reaper",
    18: "SIGUSR1 bursts, SIGHUP, a deaf main thread",
    19: "stats file on hostile ground",
    20: "slow reader, idle timeout",
    21: "metrics endpoint bounded",
    22: "drain deadline resets",
    23: "stdio and thread exhaustion",
    24: "proxy: latency",
    25: "proxy: bandwidth limit",
    26: "proxy: 1-byte segments",
    27: "proxy: reset mid-stream",
    28: "proxy: slow close",
    29: "proxy: data limit",
}

_cells: list[dict] = []
_outcome_key = pytest.StashKey[dict]()


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(number, models=None): the reliability scenario a test "
                                       "checks (tests/reliability/conftest.py), for its `model` or `models`")


def _models_of(item) -> list[str]:
    marker = item.get_closest_marker("scenario")
    if marker.kwargs.get("models"):
        return list(marker.kwargs["models"])
    params = getattr(item, "callspec", None)
    model = params.params.get("model") if params else None
    return [model] if model else []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if item.get_closest_marker("scenario") is None:
        return
    outcome = item.stash.setdefault(_outcome_key, {"outcome": "passed", "reason": "", "duration": 0.0})
    outcome["duration"] += report.duration
    if report.failed:
        outcome["outcome"] = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash else report.longreprtext.strip()
        outcome["reason"] = outcome["reason"] or f"{report.when}: " + " ".join(message.split())[:300]
    elif report.skipped and outcome["outcome"] == "passed":
        outcome["outcome"] = "skipped"
        outcome["reason"] = _skip_reason(report)
    if report.when == "teardown":
        marker = item.get_closest_marker("scenario")
        for model in _models_of(item):
            _cells.append({
                "scenario": marker.args[0], "model": model, "test": item.nodeid,
                "outcome": outcome["outcome"], "reason": outcome["reason"],
                "not_applicable": outcome["reason"].startswith(NOT_APPLICABLE),
                "duration_s": round(outcome["duration"], 2),
                "properties": dict(report.user_properties),
            })


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get(ENV_RESULTS)
    if not path or not _cells:
        return
    machine = f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    with open(path, "w") as f:
        json.dump({"generated": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine,
                   "scenarios": SCENARIOS, "models": ALL_MODELS, "cells": _cells}, f, indent=1)
