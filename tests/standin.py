"""A scripted stand-in for the Soniox server, for failures the real one rarely shows.

It speaks the real protocol over a real socket, then misbehaves on purpose:
closes mid-stream, never says ``finished``, or answers with garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

Behaviour = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Response | None]


class StandIn:
    def __init__(self, behaviour: Behaviour,
                 process_request: ProcessRequest | None = None) -> None:
        self.behaviour = behaviour
        # A behaviour may bring its own handshake hook (see refuses_handshake).
        self.process_request = process_request or getattr(behaviour, "process_request", None)
        self.received: list[object] = []
        self.headers: list[dict[str, str]] = []
        self.connections = 0

    async def __aenter__(self) -> StandIn:
        async def handler(ws: ServerConnection) -> None:
            self.connections += 1
            self.headers.append(dict(ws.request.headers.raw_items()))
            with contextlib.suppress(Exception):
                await self.behaviour(ws)

        self._server = await serve(handler, "127.0.0.1", 0,
                                   process_request=self.process_request)
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


def refuses_handshake(status: int) -> Behaviour:
    """Answers the HTTP upgrade with ``status`` (401, 403, 429, 503...), never a WebSocket.

    Use as ``StandIn(refuses_handshake(429))``: the returned behaviour carries the
    ``process_request`` hook that StandIn installs; the behaviour itself never runs."""
    phrase = http.HTTPStatus(status).phrase  # websockets only sends known statuses

    def process_request(ws: ServerConnection, request: Request) -> Response:
        return ws.respond(status, f"{phrase} (the stand-in refuses every handshake)\n")

    async def run(ws: ServerConnection) -> None:
        await ws.close()
    run.process_request = process_request  # type: ignore[attr-defined]
    return run


def error_after_audio(code: int, message: str, after_bytes: int) -> Behaviour:
    """Reads the start message and counts audio bytes; once ``after_bytes`` have arrived,
    sends ``{"error_code": code, "error_message": message}`` and closes. Text frames
    (keepalive, finalize) are ignored; a stream that ends sooner gets no answer at all."""
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        received = 0
        while received < after_bytes:
            msg = await ws.recv()
            if msg == b"":  # end of stream before the threshold: say nothing
                async for _ in ws:  # until the client hangs up
                    pass
                return
            if isinstance(msg, bytes):
                received += len(msg)
        await ws.send(json.dumps({"error_code": code, "error_message": message}))
        await ws.close()
    return run


FLOOD_REPLY = json.dumps({"tokens": [{"text": " x", "is_final": False}]})


def floods_replies(limit: int = 10_000, stop: asyncio.Event | None = None) -> Behaviour:
    """After the start message, sends small non-final replies back to back (yielding to the
    loop after each) until ``limit`` were sent, ``stop`` is set, or the client goes away
    (``send`` then raises); then closes."""
    async def run(ws: ServerConnection) -> None:
        await read_start(ws)
        for _ in range(limit):
            if stop is not None and stop.is_set():
                break
            await ws.send(FLOOD_REPLY)
            await asyncio.sleep(0)
        await ws.close()
    return run
