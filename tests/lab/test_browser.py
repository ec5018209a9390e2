"""The report in a real browser: headless Chromium loads index.html without console errors, finds the
claims table, and sees every plot as an inline SVG. Also: the screenshot command makes a PNG."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools import browser

pytestmark = pytest.mark.skipif(browser.find_chromium() is None,
                                reason="headless Chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab-page")
    result = subprocess.run([sys.executable, "-m", "iomodels", "lab", "--tiny", "--only", "deaf_server,pool_limit",
                             "--models", "blocking,threaded,threadpool,epoll", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "index.html"


def test_page_renders_cleanly_in_chromium(page):
    found = browser.check(str(page))
    assert found.console_errors == []
    assert found.claims_rows == found.verdicts == 2
    assert found.figures > 0 and found.inline_svgs == found.figures
    assert found.problems() == []


def test_screenshot_command_writes_a_png(page, tmp_path):
    png = tmp_path / "claims.png"
    result = subprocess.run([sys.executable, "-m", "tools.browser", str(page), "--screenshot", str(png)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_page_is_reported(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('boom')</script><figure><img src='x.png'></figure>"
                   "</body></html>")
    problems = browser.check(str(bad)).problems()
    assert any("boom" in problem for problem in problems)
    assert any("claims table" in problem for problem in problems)
    assert any("inline SVG" in problem for problem in problems)
