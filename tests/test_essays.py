"""Every model's essay (`iomodels explain NAME`) says who waits where, what it costs, how it fails."""

from __future__ import annotations

import pytest

from iomodels.serving import models
from tests import support


@pytest.mark.parametrize("model", support.ALL_MODELS)
def test_the_essay_covers_waiting_cost_and_failure(model):
    essay = models.essay(model).lower()
    for topic in ("who waits where", "cost", "fail"):
        assert topic in essay, f"{model}: the essay never covers {topic!r}"


def test_the_select_model_does_not_shadow_the_standard_library():
    import select

    import iomodels.serving.models.select as select_model
    assert select_model.select is select and hasattr(select, "epoll")
