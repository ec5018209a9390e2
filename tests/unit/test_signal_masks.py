"""The signal relay takes its signals in its own thread; threads started meanwhile are born with
them blocked; closing it gives the main thread its mask back."""

import os
import signal
import threading

from iomodels.serving import signals, toolkit


def _blocked_now() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_the_relay_takes_the_signal_in_its_thread_and_close_restores_the_mask():
    before_mask, before_handler = _blocked_now(), signal.getsignal(signal.SIGUSR1)
    taken_in, started_with = [], []
    arrived = threading.Event()

    def on_usr1():
        taken_in.append(threading.current_thread().name)
        arrived.set()

    relay = signals.SignalRelay({signal.SIGUSR1: on_usr1})
    try:
        assert signal.SIGUSR1 in _blocked_now()  # the main thread never takes it
        # A thread's very first code already runs with the signal blocked: nothing of ours ran before.
        toolkit.start_thread(lambda: started_with.append(_blocked_now())).join(10)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert arrived.wait(10)
    finally:
        relay.close()
        ignored = signal.getsignal(signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, before_handler)
    assert taken_in == ["signal-relay"]
    assert signal.SIGUSR1 in started_with[0]
    assert _blocked_now() == before_mask
    assert ignored == signal.SIG_IGN  # after close a late SIGUSR1 must not kill a finishing server
