"""Named sets of errno values, so every model classifies an error the same way.

What other servers do with a failed `accept`, and what we follow:
- asyncio (`selector_events._accept_connection`): EMFILE, ENFILE, ENOBUFS, ENOMEM stop accepting
  for one second ("Too many open files"), everything else in its list is logged and ignored.
- trio (`_highlevel_serve_listeners.py`): the same four errnos sleep 100 ms, ignoring the rest.
- libuv keeps a spare descriptor, closes it to accept-and-close the pending peer, reopens it.
- nginx disables accept events for 500 ms on EMFILE/ENFILE.
We back off with a growing sleep (see `AcceptBackoff` in toolkit.py), log once per episode, and
resume when a descriptor frees. Errors that concern only the connection being accepted (it was
reset before we took it, a firewall said no) are skipped. EBADF, EINVAL, ENOTSOCK mean our own
listener is wrong: that is a bug, so it propagates.
"""

import errno

# A non-blocking call found nothing to do: try again after waiting.
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS})

# The peer went away (or the path to it did): close this connection, quietly, count it.
PEER_GONE = frozenset({
    errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENOTCONN,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ESHUTDOWN,
})

# accept() failed because we are out of a resource: stop accepting for a while.
ACCEPT_CAPACITY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# accept() failed for this one pending connection only: skip it and accept the next.
ACCEPT_IGNORABLE = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET,
    errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET,
    errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.ETIMEDOUT,
})
