"""The standalone proxy: browser ⇄ this server ⇄ Soniox (or the local engine).

Clients speak the original "proxy stream" protocol: binary audio frames, an empty
text frame to end the stream; the server relays Soniox's JSON replies back and,
on failure, sends ``{"error_code": ..., "error_message": ...}`` and closes. The
key stays on this server. Each client connection is one
:class:`~soniox_widget.upstream.UpstreamSession`, the same code the notebook
widget uses.

Unlike the original example it binds 127.0.0.1 by default (binding 0.0.0.0
would make an open relay that spends the owner's key), checks the ``Origin``
header, and caps frame sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Iterable
from importlib import resources

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._serving import NOTHING, WebSocketService, recv_unless
from ..backend import Backend
from ..config import SonioxConfig
from ..errors import SonioxError
from ..upstream import UpstreamSession

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3001
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
WS_PATHS = ("/", "/ws")
_PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


def _page_file(name: str) -> bytes | None:
    try:
        return resources.files("soniox_widget.proxy").joinpath("page", name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


class ProxyServer(WebSocketService):
    """The standalone proxy; see the module docstring.

    Args:
        backend: where sessions go (from :func:`soniox_widget.backend.choose_backend`).
        config: the start options used for every client session.
        host: interface to bind (127.0.0.1 by default).
        port: port to bind (0 picks a free one).
        allowed_origins: ``Origin`` values accepted besides this server's own
            origin; ``["*"]`` accepts any (not recommended). Clients without an
            ``Origin`` header (scripts, not browsers) are accepted.
        max_frame_bytes: the largest audio frame accepted.
    """

    def __init__(
        self,
        backend: Backend,
        config: SonioxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        allowed_origins: Iterable[str] = (),
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        finish_timeout: float = 30.0,
    ) -> None:
        super().__init__(host, port)
        self.backend = backend
        self.config = config or SonioxConfig()
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.max_frame_bytes = max_frame_bytes
        self.finish_timeout = finish_timeout
        self.sessions_started = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self) -> ProxyServer:
        await self._listen(
            self._handle,
            process_request=self._process_request,
            # Frames a little over the cap still arrive, so the client gets a JSON
            # error that says what to do; far larger ones are cut off by websockets.
            max_size=self.max_frame_bytes * 2,
            server_header="soniox-widget-proxy",
        )
        logger.info("proxy (%s) listening on %s", self.backend.label, self.url)
        return self

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    # -- HTTP: the page, and the checks before the WebSocket upgrade -----------------------

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: nothing to protect against
        origin = origin.rstrip("/")
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        host = request.headers.get("Host", "")
        return origin in (f"http://{host}", f"https://{host}")

    def _process_request(self, connection: ServerConnection, request: Request
                         ) -> Response | None:
        path = request.path.split("?", 1)[0]
        wants_upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not wants_upgrade:
            entry = _PAGE_FILES.get(path)
            body = _page_file(entry[0]) if entry else None
            if entry is None or body is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
            headers = Headers([
                ("Content-Type", entry[1]),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ])
            return Response(200, "OK", headers, body)
        if path not in WS_PATHS:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no WebSocket endpoint here\n")
        if not self._origin_allowed(request):
            logger.warning("refused a connection from origin %s", request.headers.get("Origin"))
            return connection.respond(
                http.HTTPStatus.FORBIDDEN,
                "origin not allowed; start the proxy with --allow-origin ORIGIN\n",
            )
        return None

    # -- one client ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.sessions_started += 1
        session = UpstreamSession(
            self.config,
            api_key=self.backend.api_key,
            url=self.backend.url,
            finish_timeout=self.finish_timeout,
        )
        relay = asyncio.create_task(self._relay(ws, session))
        try:
            session.start()
            await self._forward(ws, session, relay)
            await relay
        except ConnectionClosed:
            logger.info("proxy client went away before the session finished")
        except _ClientError as exc:
            await _send_error(ws, 400, str(exc))
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            await session.aclose()
            with contextlib.suppress(Exception):
                await ws.close()

    async def _forward(self, ws: ServerConnection, session: UpstreamSession,
                       relay: asyncio.Task[None]) -> None:
        """Client → upstream, until the client ends the stream (or the relay stops)."""
        while True:
            message = await recv_unless(ws, relay)
            if message is NOTHING or session.error is not None:
                return
            if isinstance(message, bytes):
                if not message:
                    session.end()
                    return
                if len(message) > self.max_frame_bytes:
                    raise _ClientError(
                        f"audio frame of {len(message)} bytes is over the "
                        f"{self.max_frame_bytes}-byte limit; send smaller chunks "
                        "(e.g. MediaRecorder.start(120))"
                    )
                session.send_audio(message)
            elif message == "":
                session.end()
                return
            else:
                self._control(session, message)

    def _control(self, session: UpstreamSession, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "finalize":
            session.finalize(data.get("trailing_silence_ms"))
        elif kind == "keepalive":
            pass  # the upstream session sends its own keepalives while idle
        else:
            raise _ClientError(
                "text frames must be empty (end of stream) or a JSON control message "
                "({\"type\": \"finalize\"}); send audio as binary frames"
            )

    async def _relay(self, ws: ServerConnection, session: UpstreamSession) -> None:
        """Upstream → client: every reply as JSON; a failure as error_code/error_message."""
        try:
            async for reply in session.replies():
                await ws.send(reply.dumps())
        except SonioxError as exc:
            await _send_error(ws, exc.error_code, str(exc))
        except ConnectionClosed:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.close()


class _ClientError(Exception):
    """The proxy client broke the protocol."""


async def _send_error(ws: ServerConnection, code: int | None, message: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"error_code": code, "error_message": message}))
        await ws.close()
