"""Blocking I/O with a fixed pool of threads (tutorial section 1.1, "thread pool").

Who waits where: `--threads N` threads (default 4) are started once; each one sleeps in `accept()`
on the shared listener, serves the client it got with blocking `recv()`/`sendall()` to the end,
then goes back to `accept()`. The kernel wakes one sleeping thread per new connection. Both phases
of input block, in the pool thread that owns the connection.

What it costs: N threads, whatever the number of clients, and no thread creation per client: the
tutorial's remedy for thread-per-connection ("reduce how often threads are created and destroyed,
keep a reasonable number, let idle threads take new work").

How it fails, and what it demonstrates: the pool is a limit. With N clients connected (even
idle ones) every thread is busy, and client N+1 completes its TCP handshake but waits in the
kernel's accept queue, unanswered, until one of the N leaves. `--idle-timeout` bounds that wait;
"a pool only relieves the pressure up to its size" is what the lab measures.
"""


from iomodels.serving import toolkit
from iomodels.serving.models import ModelInfo
from iomodels.serving.models._blocking import accept_forever, serve_connection

MODEL = ModelInfo(
    kind="blocking",
    name="threadpool", family="blocking I/O + fixed thread pool", section="1.1",
    waits_in="accept() / recv() in a pool thread",
    cost="N threads, no creation per client; client N+1 waits in the accept queue",
    reads=("recv_size", "threads"))


def serve(listener, config, stats, stop, new_session):
    def worker():
        accept_forever(listener, config, stats, stop,
                       lambda conn: serve_connection(conn, new_session(), config, stats, stop))

    listener.setblocking(True)
    pool = [toolkit.start_thread(worker, name=f"pool-{i}") for i in range(config.threads)]
    stats.threads_started += len(pool)
    while not stop.wait():
        pass
    deadline = stop.finish_by()
    for thread in pool:
        thread.join(toolkit.seconds_until(deadline))
