"""The ready line: how a server says it accepts connections, and the one parser of it.

Every server the project starts (each model through iomodels/startup.py, the bare baselines in
benchmarks/baselines/) prints `listening on HOST:PORT (model NAME)` on stdout, flushed, once it
listens; tools and tests (iomodels/launcher.py) wait for that line to learn the port.
"""

from __future__ import annotations

import re

from iomodels.addresses import format_address

READY = re.compile(rb"listening on \[?([\w.:]+?)\]?:(\d+) \(model (\S+)\)")


def announce(host: str, port: int, model: str) -> None:
    print(f"listening on {format_address(host, port)} (model {model})", flush=True)


def parse(output: bytes) -> tuple[str, int, str] | None:
    """(host, port, model) from output holding a ready line, or None."""
    match = READY.search(output)
    return (match.group(1).decode(), int(match.group(2)), match.group(3).decode()) if match else None
