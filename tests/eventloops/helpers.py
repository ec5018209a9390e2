"""What the event-loop and io_uring tests share: the variants under test, patched interpreters."""

from __future__ import annotations

import json
import os
import textwrap

from tests import support

# (model, extra flags): every variant of the event-loop and completion models (io_uring in both modes).
VARIANTS = support.variants(support.models_where(kind="event loop") + support.models_where(kind="completion"))


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
