"""Numbers with unit suffixes, as the command lines take them: 64K bytes, 10s / 1m, 20k per second.

Sizes are binary (K = 1024, as `serve --high-water 64K` has always meant); counts and rates are
decimal (20k = 20,000), as wrk2's and fortio's rates are; durations take ms, s, m and h. Each
parser raises ValueError with a message naming the examples, for argparse to print as one line.
"""

from __future__ import annotations

import re

BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6}
SECOND_UNITS = {"": 1.0, "S": 1.0, "MS": 1e-3, "US": 1e-6, "M": 60.0, "MIN": 60.0, "H": 3600.0}
_NUMBER = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*")


def _split(text: str, units: dict, what: str, examples: str) -> float:
    match = _NUMBER.fullmatch(text)
    unit = match and match.group(2).upper()
    if not match or unit not in units:
        raise ValueError(f"not {what}: {text!r} (examples: {examples})")
    return float(match.group(1)) * units[unit]


def parse_bytes(text: str) -> int:
    """'65536', '64K', '64KiB', '1M', '2G' -> bytes (whole)."""
    cleaned = text.strip().upper()
    cleaned = cleaned.removesuffix("IB") if cleaned.endswith("IB") else cleaned.removesuffix("B")
    value = _split(cleaned, BYTE_UNITS, "a size in bytes", "4096, 64K, 1M")
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def parse_seconds(text: str) -> float:
    """'10', '10s', '500ms', '1m', '1.5h' -> seconds."""
    return _split(text, SECOND_UNITS, "a duration", "10, 10s, 500ms, 1m")


def parse_count(text: str) -> float:
    """'20000', '20k', '1.5M' -> a number (of requests per second, say)."""
    return _split(text, COUNT_UNITS, "a number", "20000, 20k, 1.5M")
