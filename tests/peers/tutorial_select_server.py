"""The tutorial's select server (section 1.3), kept as the tutorial wrote it: a real peer for our
client. Only changes: the port comes from argv (0 = any) and is announced with the project's
ready line; prints go to stderr.
Its bugs (it ignores partial sends) are the tutorial's; tests use messages it handles."""
import sys

from iomodels.ready import announce
from socket import *
import select

server = socket(AF_INET, SOCK_STREAM)
server.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[1])))
server.listen(5)
server.setblocking(False)
announce('127.0.0.1', server.getsockname()[1], 'tutorial-select')  # the project's ready line

rlist = [server, ]
wlist = []
wdata = {}

while True:
    rl, wl, xl = select.select(rlist, wlist, [], 0.5)
    for sock in rl:
        if sock == server:
            conn, addr = sock.accept()
            rlist.append(conn)
        else:
            try:
                data = sock.recv(1024)
                if not data:
                    sock.close()
                    rlist.remove(sock)
                    continue
                wlist.append(sock)
                wdata[sock] = data.upper()
            except Exception:
                sock.close()
                rlist.remove(sock)

    for sock in wl:
        sock.send(wdata[sock])
        wlist.remove(sock)
        wdata.pop(sock)
