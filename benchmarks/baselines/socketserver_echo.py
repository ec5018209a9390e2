"""Baseline: socketserver.ThreadingTCPServer uppercase echo, a thread per connection. `python socketserver_echo.py [PORT]`"""
import socketserver
import sys

from iomodels.ready import announce


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data.upper())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


with Server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Echo) as server:
    announce("127.0.0.1", server.server_address[1], "baseline")
    server.serve_forever()
