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
# Such a scene is taken again, the last tries with a longer silence (the server's lateness does not
# grow with it); how much longer, and why, is said in the trace's sentence.
STRETCH = (1, 1, 2, 4)


def take(model: str, delay: float = scenario.DEFAULT_DELAY, *flags: str, attempts: int = len(STRETCH)) -> phases.Trace:
    """Raises ConfigError for an unknown model, TraceError when it cannot be traced here."""
    models.load(model)
    reason = models.unavailable_reason(model)
    if reason:
        raise TraceError(f"{model} cannot run here: {reason}")
    tries = []
    for attempt, stretch in enumerate(STRETCH[:attempts], 1):
        trace = _once(model, delay * stretch, *flags)
        trace.summary["attempts"] = attempt
        if trace.summary["ready_ms"] >= delay * stretch * 1000 / 2:
            if stretch > 1:
                _note(trace, f"the machine was busy: the server began to wait too late in a {delay * 1000:.0f} ms "
                             f"silence, so this scene's silence is {delay * stretch * 1000:.0f} ms")
            return trace
        tries.append(trace)
    best = max(tries, key=lambda t: t.summary["ready_ms"])
    if best.summary["ready_ms"] <= 0:
        raise TraceError(f"{model}: {len(tries)} times the server began to wait for the request only after it had "
                         "come (the machine is too busy for a fair picture); try again, or with a longer --delay")
    _note(best, f"the machine was busy: in {len(tries)} tries the server began to wait at best "
                f"{best.summary['ready_ms']:.0f} ms before the request, of a {best.summary['delay_ms']:.0f} ms silence")
    return best


def _note(trace: phases.Trace, busy: str) -> None:
    trace.summary["busy"] = busy
    trace.summary["sentence"] += f" ({busy})"


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
