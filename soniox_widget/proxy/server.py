"""The standalone proxy: browser ⇄ this server ⇄ Soniox (or the local engine).

Clients speak the original "proxy stream" protocol: binary audio frames, an empty
text frame to end the stream, and optionally ``{"type": "finalize"}`` and
``{"type": "keepalive"}`` control messages (a client that sends nothing for
``idle_timeout`` seconds is closed with a 408). The server relays Soniox's JSON
replies back and, on failure or a bad client frame, sends
``{"error_code": ..., "error_message": ...}`` and closes. The
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
import logging
from collections.abc import Iterable
from importlib import resources

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._serving import IdleWatchdog, WebSocketService
from ..backend import Backend
from ..config import SonioxConfig
from ..errors import ConfigError, SonioxError, SonioxWidgetError
from ..protocol import (
    AudioFrame,
    EndOfStream,
    FinalizeRequest,
    ProtocolError,
    Reply,
    parse_client_message,
)
from ..upstream import UpstreamSession

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3001
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
#: A client that sends nothing (no audio, no keepalive) for this long is closed with a 408.
DEFAULT_IDLE_TIMEOUT = 30.0
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
        finish_timeout: seconds to wait for the upstream's last replies after the
            client ended its stream.
        idle_timeout: seconds a client may send nothing (no audio, no control
            message) before it gets a 408 error and its session is closed; a
            ``{"type": "keepalive"}`` resets it. ``None`` or 0 never times out.
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
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        super().__init__(host, port)
        self.backend = backend
        self.config = config or SonioxConfig()
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.max_frame_bytes = max_frame_bytes
        self.finish_timeout = finish_timeout
        if idle_timeout is not None and idle_timeout < 0:
            raise ValueError("idle_timeout must be a non-negative number of seconds")
        self.idle_timeout = idle_timeout
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
        try:
            # The backend as chosen once for the proxy: for the local engine its
            # server starts on the first connect, off the event loop.
            session = UpstreamSession(
                self.config,
                backend=self.backend,
                finish_timeout=self.finish_timeout,
            )
        except SonioxWidgetError as exc:  # the proxy's own setup, not the client's fault
            logger.error("cannot open an upstream session: %s", exc)
            await _send_error(ws, 500, str(exc))
            return
        # Sends the 408 and closes the connection, which ends the pending recv().
        watchdog = IdleWatchdog(self.idle_timeout, lambda: _send_error(
            ws, 408, f"no audio or keepalive from the client for {self.idle_timeout:g} s; "
            "the session was closed"))
        relay = asyncio.create_task(self._relay(ws, session))
        watchdog.start()
        try:
            session.start()
            await self._forward(ws, session, relay, watchdog)
            watchdog.stop()  # the client ended its stream: now it only listens
            if not watchdog.expired:
                await relay
        except ConnectionClosed:
            # Also how _forward learns that the relay or the watchdog closed the connection.
            if not relay.done() and not watchdog.expired:
                logger.info("proxy client went away before the session finished")
        except _ClientError as exc:
            watchdog.stop()
            await _send_error(ws, 400, str(exc))
        except Exception:
            watchdog.stop()
            logger.exception("proxy session crashed")
            await _send_error(ws, 500, "internal error in the proxy")
        finally:
            await watchdog.aclose()
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            await session.aclose()
            with contextlib.suppress(Exception):
                await ws.close()

    async def _forward(self, ws: ServerConnection, session: UpstreamSession,
                       relay: asyncio.Task[None], watchdog: IdleWatchdog) -> None:
        """Client → upstream, until the client ends the stream.

        No task per message: when the session ends otherwise (the upstream finished or
        failed, or the client went silent), the relay or the watchdog closes the
        connection, and ``recv()`` raises ``ConnectionClosed`` (after any frames
        already queued, which are dropped).
        """
        while True:
            frame = await ws.recv()
            if relay.done() or watchdog.expired or session.error is not None:
                return
            watchdog.touch()  # a keepalive needs nothing more than this
            try:
                message = parse_client_message(frame)
            except ProtocolError as exc:
                raise _ClientError(str(exc)) from None
            try:
                if isinstance(message, AudioFrame):
                    if len(message.data) > self.max_frame_bytes:
                        raise _ClientError(
                            f"audio frame of {len(message.data)} bytes is over the "
                            f"{self.max_frame_bytes}-byte limit; send smaller chunks "
                            "(e.g. MediaRecorder.start(120))"
                        )
                    session.send_audio(message.data)
                elif isinstance(message, FinalizeRequest):
                    session.finalize(message.trailing_silence_ms)
                elif isinstance(message, EndOfStream):
                    session.end()
                    return
                # KeepaliveMessage: the upstream session sends its own keepalives
            except ConfigError as exc:
                raise _ClientError(str(exc)) from None
            except SonioxError:
                return  # the session failed or closed: the relay reports why

    async def _relay(self, ws: ServerConnection, session: UpstreamSession) -> None:
        """Upstream → client: every reply as JSON; a failure as error_code/error_message.

        Closes the connection when the session ends, either way.
        """
        try:
            async for reply in session.replies():
                await ws.send(reply.dumps())
        except SonioxError as exc:
            await _send_error(ws, exc.error_code, str(exc))
        except ConnectionClosed:
            return
        except Exception:
            logger.exception("proxy relay crashed")
            await _send_error(ws, 500, "internal error in the proxy")
        with contextlib.suppress(ConnectionClosed):
            await ws.close()


class _ClientError(Exception):
    """The proxy client broke the protocol."""


async def _send_error(ws: ServerConnection, code: int | None, message: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(Reply(error_code=code, error_message=message).dumps())
        await ws.close()
