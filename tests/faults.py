"""Fault injection for tests: a TCP relay that can drop, cut, stall or refuse connections.

:class:`FaultyRelay` sits between a client and a real server on 127.0.0.1 and forwards
raw TCP bytes both ways (asyncio streams, no mocks). A test points the client at
:meth:`FaultyRelay.url` and then breaks the network on purpose::

    async with LocalSonioxServer(engine) as server, FaultyRelay(server.port) as relay:
        session = UpstreamSession(url=relay.url())
        ...
        await relay.drop()            # both sides see the TCP connection die (no close frame)
        await relay.dropped.wait()    # or wait for a drop armed with drop_after(n)

Byte counts are raw TCP bytes: they include the HTTP upgrade request and WebSocket
framing, not just message payloads.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class _Link:
    """One relayed connection: the client side, the server side (once open), its task."""

    def __init__(self, client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.server_writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.forwarded = 0  # client → server bytes on this connection
        self.drop_at: int | None = None  # cut once ``forwarded`` reaches this
        self.cut = False

    def abort(self) -> None:
        """Close both sockets at once, discarding buffered bytes (no FIN handshake wait)."""
        self.cut = True
        self.client_writer.transport.abort()
        if self.server_writer is not None:
            self.server_writer.transport.abort()


class FaultyRelay:
    """A TCP relay on 127.0.0.1 that forwards every connection to ``target_port``.

    Attributes:
        port: the relay's own port (picked at random).
        connections: connections accepted and forwarded (refused ones not included).
        refused: connections closed at once because of :meth:`refuse_new`.
        client_to_server_bytes: bytes forwarded client → server, all connections.
        server_to_client_bytes: bytes forwarded server → client, all connections.
        drops: connections cut by :meth:`drop` or :meth:`drop_after`.
        dropped: an :class:`asyncio.Event` set after each drop; ``clear()`` it to wait again.
        held_bytes: bytes read but held back by :meth:`stall` right now.
        holding: an :class:`asyncio.Event` set when :meth:`stall` holds back some bytes;
            ``clear()`` it to wait again.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.refused = 0
        self.client_to_server_bytes = 0
        self.server_to_client_bytes = 0
        self.held_bytes = 0
        self.drops = 0
        self.dropped = asyncio.Event()
        self.holding = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._drop_after: int | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> FaultyRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, cut every connection and wait for every relay task."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def url(self, path: str = "/transcribe-websocket") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        """Connections being relayed right now."""
        return len(self._links)

    # -- faults ---------------------------------------------------------------------------

    async def drop(self) -> int:
        """Cut every current connection abruptly on both sides (``transport.abort()``: the
        peers see the socket die, no WebSocket close frame, so close code 1006). New
        connections are still accepted. Returns how many connections were cut."""
        links = list(self._links)
        tasks = [link.task for link in links if link.task is not None]
        for link in links:
            self._cut(link)
        await asyncio.gather(*tasks, return_exceptions=True)
        self.dropped.set()
        return len(links)

    def drop_after(self, n_bytes: int) -> None:
        """One-shot: cut the connection on which ``n_bytes`` more client → server bytes have
        been forwarded (counted from now on open connections, from the start on new ones).
        Exactly ``n_bytes`` are forwarded, then both sides are aborted and :attr:`dropped`
        is set."""
        if n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        self._drop_after = n_bytes
        for link in self._links:
            link.drop_at = link.forwarded + n_bytes

    def stall(self) -> None:
        """Stop forwarding in both directions: bytes are read and held, nothing is closed
        (the peers' TCP buffers then fill up and push back)."""
        self._flowing.clear()

    def unstall(self) -> None:
        """Forward again, held bytes first."""
        self._flowing.set()

    def refuse_new(self, refuse: bool = True) -> None:
        """While on, new connections are closed at once (the upstream looks down);
        open connections are not touched."""
        self._refusing = refuse

    # -- relaying -------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing or self._server is None:
            self.refused += 1
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(reader, writer)
        if self._drop_after is not None:
            link.drop_at = self._drop_after
        self._links.add(link)
        link.task = asyncio.get_running_loop().create_task(self._serve(link))
        self._tasks.add(link.task)
        link.task.add_done_callback(self._tasks.discard)

    def _cut(self, link: _Link) -> None:
        """A deliberate drop: abort both sides and stop the link's task."""
        self.drops += 1
        link.abort()
        if link.task is not None:
            link.task.cancel()

    async def _serve(self, link: _Link) -> None:
        pumps: list[asyncio.Task[None]] = []
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
            link.server_writer = server_writer
            if link.cut:
                return
            for writer in (server_writer, link.client_writer):
                writer.transport.set_write_buffer_limits(high=0)  # drain() = flushed
            loop = asyncio.get_running_loop()
            pumps = [
                loop.create_task(self._pump(link, link.client_reader, server_writer, True)),
                loop.create_task(self._pump(link, server_reader, link.client_writer, False)),
            ]
            await asyncio.gather(*pumps)
        except OSError:
            pass  # the target is down or a socket failed: the client side is closed below
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("relay connection failed")
        finally:
            self._links.discard(link)
            if link.cut:
                link.abort()  # a socket opened during the cut is closed too
            else:
                link.client_writer.close()
                if link.server_writer is not None:
                    link.server_writer.close()
            for pump in pumps:
                pump.cancel()
            if pumps:
                await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:  # a clean half-close: pass it on
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        writer.write_eof()
                    return
                if not self._flowing.is_set():
                    self.held_bytes += len(data)
                    self.holding.set()
                    try:
                        await self._flowing.wait()
                    finally:
                        self.held_bytes -= len(data)
                if upstream and link.drop_at is not None:
                    room = link.drop_at - link.forwarded
                    if len(data) >= room:
                        self._drop_after = None  # one-shot: disarm every connection
                        for other in self._links:
                            other.drop_at = None
                        await self._forward(link, writer, data[:room], upstream)
                        self._cut(link)
                        self.dropped.set()
                        return
                await self._forward(link, writer, data, upstream)
        except (ConnectionError, OSError):
            if not link.cut:  # a peer reset: pass the failure on to the other side
                link.abort()

    async def _forward(self, link: _Link, writer: asyncio.StreamWriter, data: bytes,
                       upstream: bool) -> None:
        if not data:
            return
        writer.write(data)
        await writer.drain()
        if upstream:
            link.forwarded += len(data)
            self.client_to_server_bytes += len(data)
        else:
            self.server_to_client_bytes += len(data)

    def __repr__(self) -> str:
        return (f"<FaultyRelay :{self.port} -> :{self.target_port} "
                f"connections={self.connections} drops={self.drops}>")


__all__ = ["FaultyRelay"]
