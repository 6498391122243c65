"""The instant-echo upstream both latency benchmarks run in a process of their own.

It speaks the Soniox real-time protocol's outline: the first text frame is the start
message; each binary audio frame is answered at once with one JSON reply built by the
benchmark's ``reply(frame, received)`` (``received``: audio bytes so far, this frame
included); the empty frame (binary or text) is answered with ``finished`` and a close;
other text frames (keepalive, finalize) get no answer. Nothing else happens, so the
time a reply takes is the time of the path under test.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

Reply = Callable[[bytes, int], str]


async def echo(ws, reply: Reply) -> None:
    """One client of the upstream, until it ends its stream or goes away."""
    from websockets.exceptions import ConnectionClosed

    received = 0
    try:
        await ws.recv()  # the start message
        async for frame in ws:
            if isinstance(frame, bytes) and frame:
                received += len(frame)
                await ws.send(reply(frame, received))
            elif not frame:
                await ws.send('{"tokens":[],"finished":true}')
                await ws.close()
                return
    except ConnectionClosed:
        return


async def run(port: int, reply: Reply) -> None:
    """Serve on 127.0.0.1:``port`` until the process is stopped."""
    from websockets.asyncio.server import serve

    async with serve(lambda ws: echo(ws, reply), "127.0.0.1", port,
                     max_size=2**24) as server:
        await server.serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
