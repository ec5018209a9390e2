"""What the event-loop and io_uring tests share: the variants under test, patched interpreters."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

# (id, model, extra flags): every variant of issue 4, io_uring in both modes.
VARIANTS = [
    pytest.param("asyncio", (), id="asyncio"),
    pytest.param("uvloop", (), id="uvloop"),
    pytest.param("io_uring", ("--uring-mode", "oneshot"), id="io_uring-oneshot"),
    pytest.param("io_uring", ("--uring-mode", "multishot"), id="io_uring-multishot"),
]


def patched_env(tmp_path, code: str) -> dict:
    """Environment for a child Python that runs `code` at start-up (a sitecustomize module)."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def read_final_counters(path: str) -> dict:
    """The counters a stopped server wrote at exit (`--stats-file`)."""
    with open(path) as f:
        return json.load(f)
