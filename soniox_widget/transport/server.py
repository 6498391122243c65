"""The server side: a listener whose connections run on :mod:`.connection`.

:func:`serve` mirrors the part of ``websockets.asyncio.server.serve`` the project's
servers use: ``process_request(connection, request)`` may answer any request
(page files, refusals) before the upgrade, a ``Server`` header is set on every
response, the opening handshake has a timeout, and each accepted connection gets
one handler coroutine, run as a task the :class:`Server` owns. Within it, frames
arrive by callback (``connection.on_message``), never through a receive queue.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING
from websockets.server import ServerProtocol

from .connection import Connection

logger = logging.getLogger(__name__)

ProcessRequest = Callable[["ServerConnection", Request], Response | None]
Handler = Callable[["ServerConnection"], Awaitable[None]]


class ServerConnection(Connection):
    """One client's connection; ``request`` is its upgrade request once received."""

    def __init__(self, server: Server) -> None:
        super().__init__(
            ServerProtocol(extensions=server.extensions, max_size=server.max_size),
            ping_interval=server.ping_interval, ping_timeout=server.ping_timeout,
            close_timeout=server.close_timeout, open_timeout=server.open_timeout)
        self.server = server
        self.request: Request | None = None
        self.response: Response | None = None

    @property
    def remote_address(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    def respond(self, status: http.HTTPStatus | int, text: str) -> Response:
        """A plain-text HTTP response for ``process_request`` to return."""
        return self.protocol.reject(status, text)  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        super().connection_lost(exc)

    def _handshake_event(self, event: Any) -> None:
        if type(event) is not Request or self.protocol.state is not CONNECTING:
            return
        self.request = event
        protocol: ServerProtocol = self.protocol  # type: ignore[assignment]
        server = self.server
        response = None
        if server.process_request is not None:
            try:
                response = server.process_request(self, event)
            except Exception as exc:
                protocol.handshake_exc = exc
                logger.error("process_request failed", exc_info=True)
                response = protocol.reject(
                    http.HTTPStatus.INTERNAL_SERVER_ERROR,
                    "Failed to open a WebSocket connection.\nSee server log for more "
                    "information.\n")
        if response is None:
            response = protocol.accept(event)
            if response.status_code == 101 and not server.is_serving():
                response = protocol.reject(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                           "Server is shutting down.\n")
        if server.server_header is not None:
            response.headers["Server"] = server.server_header
        self.response = response
        protocol.send_response(response)
        self._flush()
        if response.status_code == 101:
            self._opened_now()
            server._start_handler(self)


class Server:
    """The listener and its connections; build it with :func:`serve`.

    ``close(close_connections=True)`` stops listening and starts the closing
    handshake of every connection (1001, going away); ``wait_closed()`` then returns
    when every connection is gone and every handler has returned.
    """

    def __init__(self, handler: Handler, *, process_request: ProcessRequest | None,
                 server_header: str | None, max_size: int | None,
                 extensions: Sequence[ServerExtensionFactory] | None,
                 ping_interval: float | None, ping_timeout: float | None,
                 close_timeout: float, open_timeout: float | None) -> None:
        self.handler = handler
        self.process_request = process_request
        self.server_header = server_header
        self.max_size = max_size
        self.extensions = extensions
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.open_timeout = open_timeout
        self.loop = asyncio.get_running_loop()
        self._listener: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def sockets(self) -> tuple[Any, ...]:
        return () if self._listener is None else tuple(self._listener.sockets)

    @property
    def connections(self) -> set[ServerConnection]:
        return set(self._connections)

    def is_serving(self) -> bool:
        return not self._closing and self._listener is not None and self._listener.is_serving()

    def _start_handler(self, connection: ServerConnection) -> None:
        task = self.loop.create_task(self._run_handler(connection))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, connection: ServerConnection) -> None:
        try:
            await self.handler(connection)
        except Exception:
            logger.exception("connection handler failed")
            connection.fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            # The handler is done with it: close it if it did not (e.g. was cancelled).
            connection.close()

    def close(self, close_connections: bool = True) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        if close_connections:
            for connection in list(self._connections):
                if connection.protocol.state is CONNECTING:
                    connection.abort()
                else:
                    connection.close(CloseCode.GOING_AWAY)

    async def wait_closed(self) -> None:
        """Wait for every connection to close and every handler to return."""
        if self._listener is not None:
            await self._listener.wait_closed()
        for connection in list(self._connections):
            await connection.wait_closed()
        while handlers := {task for task in self._handlers if not task.done()}:
            await asyncio.wait(handlers)

    async def serve_forever(self) -> None:
        assert self._listener is not None
        await self._listener.serve_forever()


async def serve(handler: Handler, host: str | None, port: int, *,
                process_request: ProcessRequest | None = None,
                server_header: str | None = None, max_size: int | None = 2**20,
                compression: str | None = None, ping_interval: float | None = 20.0,
                ping_timeout: float | None = 20.0, close_timeout: float = 10.0,
                open_timeout: float | None = 10.0, **create_server: Any) -> Server:
    """Listen on ``host:port``; ``handler(connection)`` runs for each accepted client.

    Example::

        async def handler(connection):
            connection.on_message = lambda message: connection.send(message)  # echo
            await connection.wait_closed()

        server = await serve(handler, "127.0.0.1", 0)
    """
    if compression not in (None, "deflate"):
        raise ValueError(f"unsupported compression: {compression}")
    extensions = enable_server_permessage_deflate(None) if compression == "deflate" else None
    server = Server(handler, process_request=process_request, server_header=server_header,
                    max_size=max_size, extensions=extensions, ping_interval=ping_interval,
                    ping_timeout=ping_timeout, close_timeout=close_timeout,
                    open_timeout=open_timeout)
    server._listener = await server.loop.create_server(
        lambda: ServerConnection(server), host, port, **create_server)
    return server
