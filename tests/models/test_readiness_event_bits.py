"""Facts the shared readiness loop relies on."""

import select


def test_epoll_and_poll_share_their_event_bits():
    # _readiness.ReadinessLoop uses poll()'s bits for epoll and for a signal's si_band.
    assert (select.EPOLLIN, select.EPOLLOUT, select.EPOLLHUP, select.EPOLLERR) == \
        (select.POLLIN, select.POLLOUT, select.POLLHUP, select.POLLERR)
