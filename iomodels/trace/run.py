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
ATTEMPTS = 4


def take(model: str, delay: float = scenario.DEFAULT_DELAY, *flags: str, attempts: int = ATTEMPTS) -> phases.Trace:
    """Raises ConfigError for an unknown model, TraceError when it cannot be traced here."""
    models.load(model)
    reason = models.unavailable_reason(model)
    if reason:
        raise TraceError(f"{model} cannot run here: {reason}")
    tries = []
    for attempt in range(1, attempts + 1):
        trace = _once(model, delay, *flags)
        trace.summary["attempts"] = attempt
        if trace.summary["ready_ms"] >= delay * 1000 / 2:
            return trace
        tries.append(trace)
    best = max(tries, key=lambda t: t.summary["ready_ms"])
    ready = best.summary["ready_ms"]
    if ready <= 0:
        raise TraceError(f"{model}: {attempts} times the server began to wait for the request only after it had "
                         "come (the machine is too busy for a fair picture); try again, or with a longer --delay")
    best.summary["busy"] = (f"the machine was busy: in {attempts} tries the server began to wait at best "
                            f"{ready:.0f} ms before the request, of a {delay * 1000:.0f} ms delay")
    best.summary["sentence"] += f" ({best.summary['busy']})"
    return best


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
