# ws_echo.py: a WebSocket echo server on Python's `websockets` (Debian's
# python3-websockets, asyncio), every message sent back as it came, no
# compression (netlua and Node's ws offer none). Listens on 127.0.0.1:PORT
# (argv[1], 0 = the OS picks) and prints the port. Benchmark peer, bench/ only.
import asyncio
import sys

import websockets


async def echo(ws, path=None):   # websockets < 10.1 passes the path too
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:   # the load generator leaves without a close
        pass


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    async with websockets.serve(echo, '127.0.0.1', port, compression=None,
                                backlog=512) as server:
        print('listening on 127.0.0.1:%d' % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == '__main__':
    asyncio.run(main())
