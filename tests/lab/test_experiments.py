"""Every experiment of the lab, run at the tiny scale: it measures, decides, plots, and cleans up.

No assertion here is about speed or about the verdict itself (a loaded 2-core machine may well
decide otherwise): only that each experiment produces rows, a verdict from them, and plots.
"""

from __future__ import annotations

import io

import psutil
import pytest
from rich.console import Console

from iomodels.lab import plotting, runner
from tests import support

# Enough models for every experiment's comparison, few enough for a short test.
MODELS = ["blocking", "threaded", "forking", "threadpool", "nonblocking", "select", "poll", "epoll",
          "asyncio", "io_uring"]


def _children() -> set[int]:
    """Our descendants, less multiprocessing's resource tracker (started once by the bench's
    first spawn and kept for the life of this process, by design)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            pass
    return found


@pytest.mark.parametrize("name", runner.EXPERIMENTS)
def test_experiment_runs_at_tiny_scale(name):
    before = _children()
    records, interrupted = runner.run([name], "tiny", MODELS, console=Console(file=io.StringIO()))
    record = records[0]
    assert not interrupted
    assert record.status == "done", record.error
    assert record.rows, "measured nothing"
    assert record.verdict in (runner.HOLDS, runner.FAILS, runner.INCONCLUSIVE, runner.UNKNOWN)
    assert record.deciding
    if record.verdict == runner.UNKNOWN:  # only when a model it needs cannot run here
        assert record.skipped, record.deciding
    figures = runner.load(name).plots(record)
    assert figures
    for i, fig in enumerate(figures):
        svg = plotting.to_svg(fig, f"{name}-{i}")
        assert svg.startswith("<svg") and "</svg>" in svg
    # Servers are stopped by PID when the experiment ends, bench workers are joined.
    assert support.wait_until(lambda: not (_children() - before), timeout=15), _children() - before


def test_unavailable_models_are_skipped_with_their_reason(monkeypatch):
    from iomodels.serving import models
    monkeypatch.setattr(models, "unavailable_reason", lambda name: "not here" if name == "threaded" else None)
    record = runner.new_record("pool_limit")
    ctx = runner.Context("tiny", None)
    assert ctx.models(record, ["threadpool", "threaded"]) == ["threadpool"]
    assert record.skipped == [{"model": "threaded", "reason": "not here"}]


def test_a_judge_that_cannot_decide_says_so():
    record = runner.new_record("deaf_server")
    record.status = "interrupted"
    runner.judge(record)
    assert record.verdict == runner.UNKNOWN
