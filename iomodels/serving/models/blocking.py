"""Blocking I/O, one client at a time (tutorial section 1.1).

Who waits where: the one and only thread sleeps in `accept()` until a client arrives, then in
`recv()` until that client sends something. Both phases of an input operation block it: waiting
for the data to arrive, and the kernel copying it into our buffer. A reply goes out with
`sendall()`, which sleeps again whenever the peer's receive window is full.

What wakes it: the kernel, when a connection is queued, when data arrives, or when send buffer
space frees up. Nothing else can: while it sleeps in one client's `recv()`, a second client's
connection completes its handshake in the kernel's accept queue (the backlog) and waits there,
unanswered, until the first client leaves. This server is "deaf" by construction; that is the
point the tutorial makes, and `tests/conformance` shows it.

What it costs: one thread and almost nothing else; zero CPU while it waits. How it fails: by
going deaf, as above. One slow or idle client stops everyone. `--max-connections` and the drain on SIGTERM
still apply; `--idle-timeout` is what keeps a silent client from holding the server forever.
"""

from iomodels.serving.models import ModelInfo
from iomodels.serving.models._blocking import accept_forever, serve_connection

MODEL = ModelInfo(
    kind="blocking",
    name="blocking", family="blocking I/O", section="1.1", waits_in="accept() / recv()",
    cost="nothing while idle, but serves one client at a time: the next ones wait unanswered",
    concurrent=False)


def serve(listener, config, stats, stop, new_session):
    listener.setblocking(True)
    accept_forever(listener, config, stats, stop,
                   lambda conn: serve_connection(conn, new_session(), config, stats, stop))
