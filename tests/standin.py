"""A scripted stand-in for the Soniox server, for failures the real one rarely shows.

It speaks the real protocol over a real socket, then misbehaves on purpose:
closes mid-stream, never says ``finished``, or answers with garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve

Behaviour = Callable[[ServerConnection], Awaitable[None]]


class StandIn:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received: list[object] = []
        self.headers: list[dict[str, str]] = []
        self.connections = 0

    async def __aenter__(self) -> StandIn:
        async def handler(ws: ServerConnection) -> None:
            self.connections += 1
            self.headers.append(dict(ws.request.headers.raw_items()))
            with contextlib.suppress(Exception):
                await self.behaviour(ws)

        self._server = await serve(handler, "127.0.0.1", 0)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/transcribe-websocket"


async def read_start(ws: ServerConnection) -> dict:
    return json.loads(await ws.recv())


def closes_after_first_audio() -> Behaviour:
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        await ws.recv()
        await ws.send(json.dumps({"tokens": [{"text": "hel", "is_final": False}]}))
        await ws.close(1011, "internal error")
    return run


def never_finishes() -> Behaviour:
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        with contextlib.suppress(Exception):
            async for _ in ws:  # swallows everything, ends when the client hangs up
                pass
    return run


def answers_garbage() -> Behaviour:
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        await ws.send("this is not json")
        async for _ in ws:  # keep reading so the client's close frame is seen
            pass
    return run


def error_reply(code: int, message: str) -> Behaviour:
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        await ws.send(json.dumps({"error_code": code, "error_message": message}))
        await ws.close()
    return run


def records_messages(store: list[object], finish_delay: float = 0.0) -> Behaviour:
    """Records every message; says finished ``finish_delay`` s after the empty frame."""
    async def run(ws: ServerConnection) -> None:
        async for msg in ws:
            store.append(msg)
            if msg in ("", b""):
                await asyncio.sleep(finish_delay)
                await ws.send(json.dumps({"tokens": [], "finished": True}))
                await ws.close()
                return
    return run
