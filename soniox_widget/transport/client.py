"""The client side: open a connection (``ws://`` or ``wss://``) on :mod:`.connection`.

:func:`connect` raises what ``websockets.asyncio.client.connect`` raises, so callers
map failures the same way: ``InvalidURI`` for a bad URL, ``InvalidStatus`` (with the
HTTP response) when the server refuses the upgrade, another ``InvalidHandshake``
for a broken handshake, ``OSError`` when the TCP or TLS connection fails and
``TimeoutError`` when the whole opening handshake takes longer than ``open_timeout``.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Mapping
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import CONNECTING
from websockets.uri import parse_uri

from .connection import Connection


class ClientConnection(Connection):
    """A connection to a server; ``response`` is the server's handshake response."""

    def __init__(self, protocol: ClientProtocol, headers: Mapping[str, str] | None,
                 user_agent: str | None, **options: Any) -> None:
        super().__init__(protocol, **options)
        self._headers = headers
        self._user_agent = user_agent
        self.response: Response | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        protocol: ClientProtocol = self.protocol  # type: ignore[assignment]
        request = protocol.connect()
        if self._user_agent is not None:
            request.headers["User-Agent"] = self._user_agent
        if self._headers:
            for name, value in self._headers.items():
                request.headers[name] = value
        protocol.send_request(request)
        self._flush()

    def _handshake_event(self, event: Any) -> None:
        if type(event) is not Response or self.response is not None:
            return
        self.response = event
        if self.protocol.handshake_exc is None:
            self._opened_now()
        elif not self._opened.done():
            self._opened.set_exception(self.protocol.handshake_exc)
            self._opened.exception()  # retrieved: the caller may have given up waiting
            self.abort()  # the server refused: nothing more to hear from it

    def _handshake_failure(self, exc: Exception | None) -> BaseException:
        if self.failure is not None and isinstance(self.failure, TimeoutError):
            return self.failure
        if self.protocol.handshake_exc is not None:
            return self.protocol.handshake_exc
        if exc is not None:
            return exc
        return InvalidHandshake("the server closed the connection during the handshake")


async def connect(url: str, *, additional_headers: Mapping[str, str] | None = None,
                  open_timeout: float | None = 10.0, max_size: int | None = 2**20,
                  compression: str | None = None, ping_interval: float | None = 20.0,
                  ping_timeout: float | None = 20.0, close_timeout: float = 10.0,
                  ssl: ssl_module.SSLContext | None = None,
                  user_agent_header: str | None = USER_AGENT) -> ClientConnection:
    """Open a WebSocket connection and complete its opening handshake.

    ``wss://`` uses ``ssl`` or, by default, ``ssl.create_default_context()`` (the
    system's certificate authorities, host name checked). Unlike websockets' own
    ``connect``, it follows no redirects and uses no HTTP proxy: a 3xx is an
    ``InvalidStatus`` like any refusal.

    Example::

        connection = await connect("wss://example.invalid/ws", open_timeout=10)
        connection.on_message = print
        connection.send_text('{"hello": 1}')
        connection.close()
        await connection.wait_closed()
    """
    uri = parse_uri(url)  # raises InvalidURI
    if compression not in (None, "deflate"):
        raise ValueError(f"unsupported compression: {compression}")
    extensions = enable_client_permessage_deflate(None) if compression == "deflate" else None
    protocol = ClientProtocol(uri, extensions=extensions, max_size=max_size)
    loop = asyncio.get_running_loop()
    context: ssl_module.SSLContext | None = None
    if uri.secure:
        context = ssl if ssl is not None else ssl_module.create_default_context()
    # The open timeout covers TCP, TLS and the upgrade, as websockets' own does: the
    # connection's timer starts once TCP is up, so the dial gets a deadline of its own.
    deadline = None if open_timeout is None else loop.time() + open_timeout
    connection: ClientConnection | None = None

    def factory() -> ClientConnection:
        nonlocal connection
        remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
        connection = ClientConnection(protocol, additional_headers, user_agent_header,
                                      ping_interval=ping_interval, ping_timeout=ping_timeout,
                                      close_timeout=close_timeout, open_timeout=remaining)
        return connection

    dial = loop.create_task(loop.create_connection(
        factory, uri.host, uri.port, ssl=context,
        server_hostname=uri.host if context else None))
    dial.add_done_callback(_retrieved)
    # asyncio.wait rather than asyncio.timeout_at (Python 3.11+) or wait_for: the dial
    # is cancelled, and a connection it made is dropped, on a timeout and on a cancel.
    try:
        done, _ = await asyncio.wait(
            {dial}, timeout=None if deadline is None else max(deadline - loop.time(), 0.0))
    except BaseException:
        dial.cancel()
        if connection is not None:
            connection.abort()
        raise
    if not done:
        dial.cancel()
        if connection is not None:
            connection.abort()
        raise TimeoutError("timed out during the opening handshake")
    dial.result()  # OSError (refused, TLS) and the like are raised here
    assert connection is not None
    try:
        await asyncio.shield(connection._opened)
    except BaseException:
        if connection.protocol.state is CONNECTING or not connection.closed.done():
            connection.abort()
        raise
    return connection


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a dial's outcome as seen: after a timeout or a cancel nobody reads it."""
    if not task.cancelled():
        task.exception()
