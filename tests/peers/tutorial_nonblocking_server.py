"""The tutorial's busy-polling server (section 1.2), kept as the tutorial wrote it: a real peer for
our client. Only changes: the port comes from argv (0 = any) and announced with the project's ready line; its debug print of the
connection list is dropped. It spins a core while it runs: tests keep it short."""
import sys

from iomodels.ready import announce
from socket import *

server = socket(AF_INET, SOCK_STREAM)
server.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[1])))
server.listen(5)
server.setblocking(False)
announce('127.0.0.1', server.getsockname()[1], 'tutorial-nonblocking')  # the project's ready line

rlist = []
wlist = []
while True:
    try:
        conn, addr = server.accept()
        rlist.append(conn)

    except BlockingIOError:
        del_rlist = []
        for sock in rlist:
            try:
                data = sock.recv(1024)
                if not data:
                    del_rlist.append(sock)
                wlist.append((sock, data.upper()))
            except BlockingIOError:
                continue
            except Exception:
                sock.close()
                del_rlist.append(sock)

        del_wlist = []
        for item in wlist:
            try:
                sock = item[0]
                data = item[1]
                sock.send(data)
                del_wlist.append(item)
            except BlockingIOError:
                pass

        for item in del_wlist:
            wlist.remove(item)

        for sock in del_rlist:
            rlist.remove(sock)
