"""Baseline: the plainest stdlib asyncio.Protocol uppercase-echo server. `python asyncio_echo.py [PORT] [--uvloop]`"""
import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]} (model baseline)", flush=True)
    await server.serve_forever()


if "--uvloop" in sys.argv:
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
asyncio.run(main(int(next((a for a in sys.argv[1:] if a.isdigit()), 0))))
