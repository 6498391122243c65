"""What the two WebSocket servers (local engine, proxy) share: owning their tasks.

Each server owns a ``websockets`` server and the handler task of every open
connection; stopping it closes the listener and cancels and awaits every handler,
so nothing outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

_NOTHING = object()


class WebSocketService:
    """Base of a server class: call :meth:`_listen` from ``start()``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> Any:
        raise NotImplementedError

    async def _listen(self, handler: Callable[[ServerConnection], Awaitable[None]],
                      **options: Any) -> None:
        async def tracked(ws: ServerConnection) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            try:
                await handler(ws)
            finally:
                self._handlers.discard(task)

        self._server = await serve(tracked, self.host, self.port, **options)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            await server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def recv_unless(ws: ServerConnection, other: asyncio.Task[Any]) -> Any:
    """The next message from ``ws``, or :data:`NOTHING` if ``other`` finishes first."""
    recv = asyncio.ensure_future(ws.recv())
    done, _ = await asyncio.wait({recv, other}, return_when=asyncio.FIRST_COMPLETED)
    if recv in done:
        return recv.result()
    recv.cancel()
    with contextlib.suppress(BaseException):
        await recv
    return _NOTHING


NOTHING = _NOTHING


async def serve_until_signal(service: WebSocketService, banner: Callable[[], str]) -> None:
    """Run a service from the command line until SIGINT or SIGTERM."""
    async with service:
        print(banner(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
