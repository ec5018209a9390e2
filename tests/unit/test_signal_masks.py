"""Threads a server starts leave SIGINT/SIGTERM/SIGUSR1 to the main thread, from their first instruction."""

import signal
import threading

from iomodels.serving import toolkit

MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}


def _blocked_now() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_a_started_thread_is_born_with_the_signals_blocked_and_the_main_thread_keeps_them():
    before = _blocked_now()
    seen = []
    # The target is the thread's very first code: nothing of ours ran in it before.
    toolkit.start_thread(lambda: seen.append(_blocked_now())).join(10)
    assert MAIN_THREAD_SIGNALS <= seen[0]
    assert _blocked_now() == before


def test_the_drain_timer_takes_no_signal_either():
    stop = toolkit.Stop(drain_timeout=30)
    try:
        stop.request()
        timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
        assert timers
        for timer in timers:
            with open(f"/proc/self/task/{timer.native_id}/status") as status:
                blocked = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
            assert all(blocked & (1 << (sig - 1)) for sig in MAIN_THREAD_SIGNALS)
            timer.cancel()
    finally:
        stop.close()
