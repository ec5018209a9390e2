"""Open the report in headless Chromium: check it renders cleanly, and take screenshots of it.

    python -m tools.browser lab-report/index.html                       # check only
    python -m tools.browser lab-report/index.html --screenshot claims.png  # + the claims table

Chromium is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: JSON
messages separated by NUL bytes on descriptors 3 and 4), so nothing listens on a port and no
package beyond the standard library is needed. The check collects console errors, uncaught
exceptions and failed loads while the page opens, then asks the page itself: is the claims table
there, and is every plot an inline <svg>?
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# What the page reports about itself once loaded.
INSPECT = """JSON.stringify({
  claimsRows: document.querySelectorAll('#claims tbody tr').length,
  verdicts: document.querySelectorAll('#claims .verdict').length,
  figures: document.querySelectorAll('figure').length,
  inlineSvgs: document.querySelectorAll('figure > svg').length,
  images: document.querySelectorAll('img, object, embed, iframe').length,
  external: [...document.querySelectorAll('[src], link[href], script')].map(e => e.src || e.href || 'inline script'),
})"""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    claims_rows: int = 0
    verdicts: int = 0
    figures: int = 0
    inline_svgs: int = 0
    images: int = 0
    external: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = [f"console: {message}" for message in self.console_errors]
        if not self.claims_rows or self.verdicts != self.claims_rows:
            found.append(f"claims table: {self.claims_rows} rows, {self.verdicts} verdicts")
        if self.inline_svgs != self.figures or not self.figures:
            found.append(f"{self.figures} figures but {self.inline_svgs} inline SVG plots")
        if self.images or self.external:
            found.append(f"not self-contained: {self.images} embedded objects, external: {self.external}")
        return found


def _on_fds_3_and_4(reader: int, writer: int):
    """In the child: put the pipe ends on descriptors 3 and 4, where Chromium expects them.

    Both are first copied above 9, so neither is overwritten if it already sits on 3 or 4; the
    copies and every other descriptor of ours are close-on-exec (Python's default), and dup2()
    leaves 3 and 4 open across exec.
    """
    def preexec():
        high_reader = fcntl.fcntl(reader, fcntl.F_DUPFD_CLOEXEC, 10)
        high_writer = fcntl.fcntl(writer, fcntl.F_DUPFD_CLOEXEC, 10)
        os.dup2(high_reader, 3)
        os.dup2(high_writer, 4)
    return preexec


class DevTools:
    """A Chromium process and its DevTools pipe. Always closed by PID (its own process group)."""

    def __init__(self, chromium: str, width: int = 1200, height: int = 900, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="iomodels-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
                f"--window-size={width},{height}", "--hide-scrollbars", "--mute-audio"]
        self.proc = subprocess.Popen(
            [chromium, *args], preexec_fn=_on_fds_3_and_4(to_browser_r, from_browser_w), close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self._profile.name, "stderr.log"), "w"), start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"Chromium exited: {self.last_error()}") from None
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read())

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"Chromium said nothing for {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe: {self.last_error()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def last_error(self) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self._profile.name, "stderr.log"), errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
            return lines[-1] if lines else "no message"
        return "no message"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started, by its id
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
    return errors


def check(page: str, screenshot: str | None = None, element: str = "#claims-card", width: int = 1200,
          scale: float = 1.0, chromium: str | None = None) -> PageCheck:
    """Load `page` (a local HTML file); return what was found. Optionally save a PNG of `element`."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    browser = DevTools(chromium, width=width)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": scale, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": "file://" + os.path.abspath(page)}, session=session)
        browser.wait_event("Page.loadEventFired")
        found = json.loads(browser.send("Runtime.evaluate", {"expression": INSPECT, "returnByValue": True},
                                        session=session)["result"]["value"])
        if screenshot:
            _screenshot(browser, session, element, screenshot)
        time.sleep(0.2)  # late console messages
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush pending events
    finally:
        browser.close()
    return PageCheck(console_errors=_console_errors(browser.events), claims_rows=found["claimsRows"],
                     verdicts=found["verdicts"], figures=found["figures"], inline_svgs=found["inlineSvgs"],
                     images=found["images"], external=found["external"])


def _screenshot(browser: DevTools, session: str, element: str, path: str) -> None:
    box = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": (
        f"(() => {{ const r = document.querySelector({json.dumps(element)}).getBoundingClientRect();"
        f" return {{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}}; }})()")},
        session=session)["result"]["value"]
    margin = 12
    clip = {"x": max(0, box["x"] - margin), "y": max(0, box["y"] - margin), "width": box["width"] + 2 * margin,
            "height": box["height"] + 2 * margin, "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                        session=session)
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="the report's index.html")
    parser.add_argument("--screenshot", metavar="PNG", help="save a PNG of --element")
    parser.add_argument("--element", default="#claims-card", help="CSS selector to capture (default: the claims table)")
    parser.add_argument("--width", type=int, default=1200, help="viewport width in CSS pixels (default: 1200)")
    parser.add_argument("--scale", type=float, default=1.0, help="device pixels per CSS pixel (default: 1)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.page):
        parser.exit(2, f"{parser.prog}: error: no such file: {args.page}\n")
    try:
        result = check(args.page, args.screenshot, args.element, args.width, args.scale)
    except (FileNotFoundError, TimeoutError, RuntimeError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    problems = result.problems()
    print(f"{args.page}: {result.claims_rows} claims, {result.inline_svgs}/{result.figures} plots inline, "
          f"{len(result.console_errors)} console errors" + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
