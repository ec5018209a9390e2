"""Serving one connection with blocking calls: what the blocking family (blocking, threaded,
forking, threadpool) shares. The caller decides who runs it: the main thread, a new thread, a
new process or a pool thread.

Timeouts stay in the kernel: `--idle-timeout` becomes SO_RCVTIMEO/SO_SNDTIMEO, so the thread still
sleeps inside recv()/send() as the model says (Python's `settimeout` would switch the socket to
non-blocking and wait in poll() instead). When the timeout expires the call fails with EAGAIN.
Back-pressure needs no code here: while `sendall` waits for a peer that does not read, this
thread reads nothing, so at most one reply is ever pending.

At the drain deadline the toolkit's timer wakes the thread (`Stop.close_tracked`): SHUT_RD ends a
blocked `recv()` without sending anything, and the input it may have just returned is left
unanswered; a blocked `sendall()` wakes only on SHUT_WR, whose FIN queues behind the output the
peer is not taking. Either way the thread then closes with SO_LINGER 0: the peer gets a RST, never
a FIN it would take for the end of a whole reply (unless it drains the whole send buffer in the
moment between the shutdown and the close).
"""

from __future__ import annotations

import socket
import struct
import time

from iomodels.serving import toolkit
from iomodels.serving.config import ServerConfig
from iomodels.serving.core import EchoSession
from iomodels.serving.stats import Stats


def _set_kernel_timeout(conn: socket.socket, seconds: float) -> None:
    seconds = max(seconds, 0.001)  # a zero timeval means "no timeout" to the kernel
    timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def serve_connection(conn: socket.socket, session: EchoSession, config: ServerConfig, stats: Stats,
                     stop: toolkit.Stop) -> None:
    """Echo on `conn` until the peer closes, a timeout or an error; always release `conn`."""
    started = time.monotonic()
    recv_size = config.recv_size
    try:
        with stop.tracking(conn):
            if config.idle_timeout:
                _set_kernel_timeout(conn, config.idle_timeout)
            while True:
                if config.max_connection_age:
                    left = config.max_connection_age - (time.monotonic() - started)
                    if left <= 0:
                        stats.aged_closed += 1
                        break
                    # Wake up when the age runs out even if the peer says nothing.
                    _set_kernel_timeout(conn, min(left, config.idle_timeout or left))
                stats.recv_calls += 1
                data = conn.recv(recv_size)
                if stop.requested and stop.past_deadline():  # one attribute per request
                    break  # cut off: the input just read goes unanswered, and the peer gets a RST
                if not data:
                    session.receive_eof()
                    break
                stats.bytes_in += len(data)
                # sendall() returns once all of it is sent: nothing ever waits in the session.
                reply = session.reply_to(data)
                stats.send_calls += 1
                conn.sendall(reply)
                stats.bytes_out += len(reply)
    except BlockingIOError:
        # SO_RCVTIMEO/SO_SNDTIMEO expired: idle for too long, or the age limit.
        if config.max_connection_age and time.monotonic() - started >= config.max_connection_age:
            stats.aged_closed += 1
        else:
            stats.idle_closed += 1
    except Exception as exc:
        toolkit.connection_failed(exc, stats)
    finally:
        toolkit.release(conn, stats, reset=stop.past_deadline())


def accept_forever(listener: socket.socket, config: ServerConfig, stats: Stats, stop: toolkit.Stop,
                   handle) -> None:
    """Blocking accept loop: `handle(conn)` each admitted connection until a stop is requested.

    `handle` is where the family differs: serve it here, in a thread, or in a child process.
    """
    acceptor = toolkit.Acceptor(listener, stats, stop)
    while not stop.requested:
        conn = acceptor.accept()
        if conn is None:
            break  # the stop shut the listener down: that is how a blocked accept() learns of it
        if isinstance(conn, float):
            stop.wait(conn)  # out of descriptors: pause, then try again
            continue
        if toolkit.admit(conn, config, stats):
            handle(conn)
