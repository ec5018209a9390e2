"""One trace: start MODEL's server under strace, play the scenario against it, classify the calls."""

from __future__ import annotations

import time

from iomodels.serving import models
from iomodels.trace import phases, scenario, strace
from iomodels.trace.strace import TraceError

# After the ready line, the server is still finishing its start (imports, the first wait): a
# moment for it to settle, so that its start-up does not land in the scenario.
SETTLE_S = 0.3


# A scene counts only if the server was waiting for the request well before it came: on a loaded
# machine a starved server (and strace, which it waits for at every call) may take the connection,
# or start the connection's thread, only once the request has arrived, and then it waited for nothing.
ATTEMPTS = 3


def take(model: str, delay: float = scenario.DEFAULT_DELAY, *flags: str) -> phases.Trace:
    """Raises ConfigError for an unknown model, TraceError when it cannot be traced here."""
    models.load(model)
    reason = models.unavailable_reason(model)
    if reason:
        raise TraceError(f"{model} cannot run here: {reason}")
    for attempt in range(1, ATTEMPTS + 1):
        trace = _once(model, delay, *flags)
        if trace.summary["ready_ms"] >= delay * 1000 / 2:
            trace.summary["attempts"] = attempt
            return trace
    raise TraceError(f"{model}: {ATTEMPTS} times the server began to wait only "
                     f"{trace.summary['ready_ms']:.0f} ms before the request (the delay was {delay * 1000:.0f} ms): "
                     "the machine is too busy for a fair picture; try again, or with a longer --delay")


def _once(model: str, delay: float, *flags: str) -> phases.Trace:
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
