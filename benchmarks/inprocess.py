"""A model's CPU per request with no load generator and no other process: in-process.

    .venv/bin/python benchmarks/inprocess.py [floor selectors epoll epoll-et poll select io_uring
                                              io_uring:oneshot] [--connections 100]

The clients live in this process: each turn, every client sends one message, then the model's loop
runs `wait()` until all are answered, then the clients read their replies. Only the server's part
is timed (`time.process_time()` around the waits: its Python work and the kernel work of its
system calls). `floor` is the least a Python epoll loop can do per request: `epoll.poll()`, a dict
lookup, `recv_into`, `upper`, `send`, with no session and no counters; `selectors`, the loop of
baselines/selectors_echo.py; `io_uring` turns the proactor (`Proactor.turn`: submit, wait, handle)
until every reply is handed over, then submits the last sends. Much steadier than a run
against the load generator on a shared machine, and blind to what only shows under real load
(batching, scheduling): a tool for comparing two versions of the hot path, not for the claims.
Pin it to one CPU (`taskset -c 0`) for steadier figures.
"""

from __future__ import annotations

import argparse
import select
import selectors
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from iomodels.serving import models  # noqa: E402
from iomodels.serving.config import ServerConfig  # noqa: E402
from iomodels.serving.toolkit import Stop, session_factory  # noqa: E402
from iomodels.serving.stats import Stats  # noqa: E402

LOOPS = {"epoll": "EpollLoop", "epoll-et": "EdgeEpollLoop", "poll": "PollLoop", "select": "SelectLoop"}


def model_server(name: str, listener: socket.socket, count: int):
    """The model's loop, with `count` connections accepted; returns what serves one turn, and
    what closes it all."""
    stats, stop = Stats(), Stop(1.0)
    config = ServerConfig(model=name)
    loop = getattr(models.load(name), LOOPS[name])(listener, config, stats, stop, session_factory(config))
    loop.listening = True
    loop.watch(loop.listener_fd, loop.READ)
    def close() -> None:
        for conn in list(loop.conns.values()):
            loop.close(conn)
        loop.close_waiter()
        stop.close()
    return turning(loop.wait, lambda: len(loop.conns), count, stats), close


def turning(turn, connected, count: int, stats: Stats, then=lambda: None):
    """Turn the loop (`turn(timeout)`) until `count` connections are in; return what turns it
    until `expected_bytes` more went out (then calls `then`)."""
    while connected() < count:
        turn(1.0)

    def serve(expected_bytes: int) -> None:
        target = stats.bytes_out + expected_bytes
        while stats.bytes_out < target:
            turn(0)
        then()
    return serve


def uring_server(name: str, listener: socket.socket, count: int):
    """The io_uring model's proactor in either receive mode (`io_uring:oneshot`)."""
    from iomodels.serving import uring
    from iomodels.serving.models import io_uring
    _, _, mode = name.partition(":")
    stats, stop = Stats(), Stop(1.0)
    ring = uring.Ring(io_uring.RING_ENTRIES)
    config = ServerConfig(model="io_uring", uring_mode=mode or "multishot")
    proactor = io_uring.Proactor(ring, listener, config, stats, stop, session_factory(config))
    proactor.arm_accept()

    def close() -> None:
        proactor._finish(None)
        ring.close()
        stop.close()
    # The last replies are handed over, still to be published: submit them.
    return turning(proactor.turn, lambda: len(proactor.connections), count, stats, ring.submit), close


def floor_server(listener: socket.socket, count: int):
    epoll, socks, buffer = select.epoll(), {}, bytearray(65536)
    while len(socks) < count:
        sock, _ = listener.accept()
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        epoll.register(sock.fileno(), select.EPOLLIN)

    def serve(expected_bytes: int) -> None:
        while expected_bytes > 0:
            for fd, _ in epoll.poll(0):
                sock = socks[fd]
                got = sock.recv_into(buffer)
                expected_bytes -= sock.send(buffer[:got].upper())

    def close() -> None:
        for sock in socks.values():
            sock.close()
        epoll.close()
    return serve, close


def selectors_server(listener: socket.socket, count: int):
    """The loop of baselines/selectors_echo.py, the obvious way to write it."""
    selector = selectors.DefaultSelector()
    while len(selector.get_map()) < count:
        sock, _ = listener.accept()
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)

    def serve(expected_bytes: int) -> None:
        while expected_bytes > 0:
            for key, _ in selector.select(0):
                data = key.fileobj.recv(65536)
                key.fileobj.sendall(data.upper())
                expected_bytes -= len(data)

    def close() -> None:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    return serve, close


SERVERS = {"floor": floor_server, "selectors": selectors_server}


def measure(name: str, connections: int, size: int, turns: int) -> float:
    listener = socket.create_server(("127.0.0.1", 0), backlog=connections)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(connections)]
    for client in clients:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    make = SERVERS.get(name) or (lambda *args: (uring_server if name.startswith("io_uring") else model_server)(
        name, *args))
    serve, close = make(listener, connections)
    message, spent = b"a" * size, 0.0
    for _ in range(turns):
        for client in clients:
            client.sendall(message)
        started = time.process_time()
        serve(connections * size)
        spent += time.process_time() - started
        for client in clients:
            reply = b""
            while len(reply) < size:
                reply += client.recv(size - len(reply))
    close()
    for sock in clients + [listener]:
        sock.close()
    return spent / (turns * connections) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="*", default=["floor", "selectors", "epoll", "epoll-et", "poll", "select"])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--turns", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=5, help="measurements per server, interleaved")
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in args.servers}
    for _ in range(args.repeat):
        for name in args.servers:
            results[name].append(measure(name, args.connections, args.size, args.turns))
    for name, values in results.items():
        print(f"{name:10} server CPU per request: best {min(values):.2f} us, all "
              + " ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
