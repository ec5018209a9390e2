"""`iomodels models` lists every readiness model; `iomodels explain NAME` prints its essay."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from iomodels.serving import models
from tests.readiness.helpers import READINESS_MODELS


def iomodels(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "iomodels", *args], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_models_lists_them_all():
    listing = iomodels("models")
    for name in READINESS_MODELS:
        assert f" {name} " in listing


@pytest.mark.parametrize("model", READINESS_MODELS)
def test_explain_prints_the_essay(model):
    text = iomodels("explain", model)
    essay = models.essay(model)
    assert essay.splitlines()[0] in text
    # Every essay says who waits where, what it costs and how it fails.
    for topic in ("Who waits where", "cost", "fail"):
        assert topic.lower() in essay.lower(), f"{model}: the essay never covers {topic!r}"


def test_select_module_does_not_shadow_the_standard_library():
    import select

    import iomodels.serving.models.select as select_model
    assert select_model.select is select and hasattr(select, "epoll")
