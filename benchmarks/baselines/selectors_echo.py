"""Baseline: a plain `selectors` uppercase-echo loop, written the obvious way. `python selectors_echo.py [PORT]`"""
import selectors
import socket
import sys

from iomodels.ready import announce

listener = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), backlog=1024)
listener.setblocking(False)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
announce("127.0.0.1", listener.getsockname()[1], "baseline")
while True:
    for key, _ in selector.select():
        if key.fileobj is listener:
            conn, _ = listener.accept()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            selector.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = key.fileobj.recv(65536)
        except ConnectionError:
            data = b""
        if data:
            key.fileobj.sendall(data.upper())  # small replies: the send buffer always has room
        else:
            selector.unregister(key.fileobj)
            key.fileobj.close()
