"""`iomodels lab` end to end at the tiny scale: the three files, the page's structure, the Markdown,
redrawing from results.json, user errors, and Ctrl-C writing what was measured so far."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import psutil
import pytest

from tests import support

LAB = [sys.executable, "-m", "iomodels", "lab"]
EXPERIMENTS = "deaf_server,pool_limit,busy_polling"
MODELS = "blocking,threaded,threadpool,nonblocking,epoll"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab-report")
    result = subprocess.run([*LAB, "--tiny", "--only", EXPERIMENTS, "--models", MODELS, "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_writes_html_markdown_and_json(report_dir):
    results = json.loads((report_dir / "results.json").read_text())
    assert [e["name"] for e in results["experiments"]] == EXPERIMENTS.split(",")
    assert {"cpu", "cores", "kernel", "python", "packages"} <= set(results["machine"])
    for experiment in results["experiments"]:
        assert experiment["status"] == "done" and experiment["rows"] and experiment["deciding"]
    markdown = (report_dir / "report.md").read_text()
    assert "| Claim | § | Verdict | Rule | The numbers that decided it |" in markdown
    assert markdown.count("\n## ") == len(results["experiments"]) + 1  # + the machine


def test_page_is_self_contained_with_claims_first_and_inline_svg_plots(report_dir):
    page = (report_dir / "index.html").read_text()
    assert page.index('id="claims"') < page.index("<figure>")
    rows = re.findall(r'<tr><td class="claim">', page)
    assert len(rows) == len(EXPERIMENTS.split(","))
    assert page.count("<figure>") == page.count("<figure><svg") > 0
    assert "<script" not in page and "src=" not in page and "<link" not in page
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat across plots"


def test_report_only_redraws_from_results_json(report_dir):
    (report_dir / "index.html").unlink()
    result = subprocess.run([*LAB, "--report-only", "--out", str(report_dir)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (report_dir / "index.html").exists()


@pytest.mark.parametrize("args, fragment", [
    (("--models", "nosuch"), "unknown model(s) nosuch"),
    (("--only", "nosuch"), "unknown experiment(s) nosuch"),
    (("--quick", "--full"), "not allowed with argument"),
])
def test_user_errors_are_one_line(args, fragment, tmp_path):
    result = subprocess.run([*LAB, *args, "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ctrl_c_stops_servers_and_writes_what_was_measured(tmp_path):
    lab = subprocess.Popen([*LAB, "--tiny", "--only", "busy_polling,deaf_server", "--out", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(lab.pid)
    seen: set[psutil.Process] = set()

    def second_server_started() -> bool:
        # The lab's own children only: a forking server's children run the same command line.
        for child in process.children():
            try:
                if "serve" in child.cmdline():
                    seen.add(child)
            except psutil.Error:  # gone, or a zombie about to be reaped
                pass
        return len(seen) >= 2  # one model after another: the first model was measured already

    try:
        assert support.wait_until(second_server_started, timeout=60)
        lab.send_signal(signal.SIGINT)
        _, stderr = lab.communicate(timeout=60)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert lab.returncode == 130, stderr[-2000:]
    gone, alive = psutil.wait_procs(list(seen), timeout=10)
    assert not alive, f"servers left running: {alive}"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["interrupted"] is True
    first, second = results["experiments"]
    assert first["status"] == "interrupted" and first["rows"]
    assert second["status"] == "not run"
    assert "Interrupted" in (tmp_path / "index.html").read_text()


def test_only_accepts_dashes_as_in_the_readme_and_the_list():
    from iomodels.lab.cli import _names
    from iomodels.lab.runner import EXPERIMENTS
    assert _names("deaf-server, connection_pool", list(EXPERIMENTS), "experiment(s)", dashes=True) == [
        "deaf_server", "connection_pool"]
