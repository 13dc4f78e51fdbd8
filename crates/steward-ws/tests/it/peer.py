"""An independent WebSocket peer (the Python `websockets` package) for steward-ws tests.

Usage: peer.py MODE [ARGS...] [--port N]

Prints `PORT <n>` once listening, then one line per notable thing:
`CLOSED <code>` when a connection ends (the close code the client sent),
`PONG` / `NOPONG` in ping mode, `RECEIVED <n>` counts in count mode.

Modes:
  echo                 echo every message back, same type
  fragment N           echo every message back split into N fragments
  close CODE REASON    close at once with CODE and REASON
  big SIZE [N]         send one text message of SIZE bytes (in N fragments), then echo
  ping                 ping the client and report whether the pong came
  silent               stop reading the socket at once (no pongs, no data)
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def say(line):
    print(line, flush=True)


async def report_close(ws):
    try:
        await ws.wait_closed()
    finally:
        say(f"CLOSED {ws.close_code}")


async def echo(ws, fragments=1):
    try:
        async for message in ws:
            if fragments <= 1:
                await ws.send(message)
                continue
            step = max(1, -(-len(message) // fragments))
            parts = [message[i : i + step] for i in range(0, len(message), step)]
            await ws.send(parts or [message])
    except ConnectionClosed:
        pass


async def handler(ws, mode, args):
    closer = asyncio.ensure_future(report_close(ws))
    if mode == "echo":
        await echo(ws)
    elif mode == "fragment":
        await echo(ws, int(args[0]))
    elif mode == "close":
        await ws.close(int(args[0]), args[1] if len(args) > 1 else "")
    elif mode == "big":
        size = int(args[0])
        parts = int(args[1]) if len(args) > 1 else 1
        step = -(-size // parts)
        try:
            if parts <= 1:
                await ws.send("x" * size)
            else:
                await ws.send(["x" * min(step, size - i) for i in range(0, size, step)])
        except ConnectionClosed:
            pass
        await echo(ws)
    elif mode == "ping":
        try:
            waiter = await ws.ping(b"from-python")
            await asyncio.wait_for(waiter, 5)
            say("PONG")
        except (asyncio.TimeoutError, ConnectionClosed):
            say("NOPONG")
        await echo(ws)
    elif mode == "silent":
        # Neither read nor answer: the kernel buffers fill, no pong is sent.
        ws.transport.pause_reading()
        await asyncio.sleep(3600)
    else:
        raise SystemExit(f"unknown mode {mode}")
    await closer


async def main():
    argv = sys.argv[1:]
    port = 0
    if "--port" in argv:
        i = argv.index("--port")
        port = int(argv[i + 1])
        del argv[i : i + 2]
    mode, args = argv[0], argv[1:]
    async with serve(
        lambda ws: handler(ws, mode, args),
        "127.0.0.1",
        port,
        ping_interval=None,
        max_size=64 * 1024 * 1024,
        compression=None,
    ) as server:
        sock = next(iter(server.sockets))
        say(f"PORT {sock.getsockname()[1]}")
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
