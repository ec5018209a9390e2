"""One trace: start MODEL's server under strace, play the scenario against it, classify the calls."""

from __future__ import annotations

import time

from iomodels.serving import models
from iomodels.trace import phases, scenario, strace
from iomodels.trace.strace import TraceError

# After the ready line, the server is still finishing its start (imports, the first wait): a
# moment for it to settle, so that its start-up does not land in the scenario.
SETTLE_S = 0.3


def take(model: str, delay: float = scenario.DEFAULT_DELAY, *flags: str) -> phases.Trace:
    """Raises ConfigError for an unknown model, TraceError when it cannot be traced here."""
    models.load(model)
    reason = models.unavailable_reason(model)
    if reason:
        raise TraceError(f"{model} cannot run here: {reason}")
    with strace.traced_server(model, *flags) as traced:
        time.sleep(SETTLE_S)
        try:
            client = scenario.run(traced.server.address, delay)
        except scenario.ScenarioFailed as exc:
            raise TraceError(f"{model}: {exc}") from None
        time.sleep(phases.TAIL_S)  # the server's last calls on the connection: EOF, close
        calls = traced.finish()
    if not calls:
        raise TraceError(f"strace recorded no system call of the {model} server")
    return phases.classify(model, calls, client)
