"""Baseline: the plainest asyncio uppercase-echo server.

    python asyncio_echo.py [PORT] [--uvloop] [--buffered]

`--buffered`: an `asyncio.BufferedProtocol` reading into one 64 KiB buffer: what bounding every
read that way would cost by itself (the asyncio and uvloop models use a plain Protocol, as `Echo`
here, and bound asyncio's reads with the transport's `max_size` instead)."""
import asyncio
import sys

from iomodels.ready import announce


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


class BufferedEcho(asyncio.BufferedProtocol):
    buffer = bytearray(65536)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.transport.write(self.buffer[:nbytes].upper())


async def main(port: int) -> None:
    protocol = BufferedEcho if "--buffered" in sys.argv else Echo
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
    announce("127.0.0.1", server.sockets[0].getsockname()[1], "baseline")
    await server.serve_forever()


if "--uvloop" in sys.argv:
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
asyncio.run(main(int(next((a for a in sys.argv[1:] if a.isdigit()), 0))))
