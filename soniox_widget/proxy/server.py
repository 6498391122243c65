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

Both legs run on :mod:`soniox_widget.transport`, websockets' sans-I/O core driven
from asyncio callbacks: each client frame is handed to the session from the
client connection's ``data_received`` and written upstream at once, and each reply
is written to the client from the upstream connection's ``data_received`` (no
receive queue, no writer task, no task switch per frame either way). Flow control
joins the legs: while the client reads too slowly the upstream is not read, and
while the upstream takes audio too slowly the client is not read, so memory stays
bounded whichever side stalls.

Every session spends the owner's key, so unlike the original example the proxy
decides who may open one, before any session starts:

* it binds 127.0.0.1 by default, and every request (page files and WebSocket
  upgrades alike) passes :class:`~soniox_widget.access.AccessPolicy`: a ``Host``
  that is not this server's (DNS rebinding) gets 421, a foreign browser
  ``Origin`` gets 403;
* bound beyond loopback it requires an access token, the way Jupyter does: as
  ``?token=``, an ``Authorization: Token ...`` header, or the HttpOnly cookie the
  page receives on its first good request; otherwise 401;
* at most ``max_sessions`` sessions run at once; a client over the limit gets a
  429 error reply and a close, and no upstream session;
* frame sizes are capped, and silent clients are closed.

Two ways in for a WebSocket client:

* ``/`` and ``/ws``: the "proxy stream" protocol above; the proxy's own options
  (``config``) are every session's start message.
* ``/transcribe-websocket``: the Soniox protocol itself: the client's first frame is its
  start message (its ``api_key``, if any, is dropped: the proxy's key is used), then
  the same frames as above. The package's own clients (the widget's kernel,
  ``transcribe_file``) then use the proxy by ``SONIOX_WS_URL`` with the proxy's token as
  their key (``Authorization: Bearer``), and resume on another replica after a drop or
  a 503, as they do with Soniox.

As a service (:mod:`soniox_widget.service`): ``GET /healthz``, ``/readyz`` and, with
``metrics=True``, ``/metrics`` are answered before any check, without a token; one log
line per session; :meth:`drain` ends what is left with a 503 "restart the request".
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import re
from collections.abc import Callable, Iterable
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .._serving import IdleWatchdog, WebSocketService
from ..access import AccessPolicy, is_loopback
from ..backend import Backend
from ..config import SonioxConfig
from ..errors import ConfigError, SonioxError, SonioxWidgetError
from ..protocol import (
    WS_PATH,
    AudioFrame,
    EndOfStream,
    FinalizeRequest,
    ProtocolError,
    Reply,
    parse_client_message,
    parse_start_message,
)
from ..redaction import register_secret
from ..service import DRAIN_MESSAGE, EndReason, ServiceMetrics, ServiceState, SessionTicket
from ..session import SessionState
from ..transport import ServerConnection
from ..upstream import UpstreamSession

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3001
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
#: A client that sends nothing (no audio, no keepalive) for this long is closed with a 408.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Each session holds an upstream connection on the owner's key: a bound on the spending.
DEFAULT_MAX_SESSIONS = 32
#: The command line reads the access token from here when ``--token`` is not given.
TOKEN_ENV_VAR = "SONIOX_PROXY_TOKEN"
# URL-unreserved characters only: the token then reads the same in a URL, a header
# and a cookie, with no escaping anywhere.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
WS_PATHS = ("/", "/ws", WS_PATH)
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
        allowed_hosts: ``Host`` names accepted besides this server's own (e.g. the
            public name of a reverse proxy in front of it); see
            :class:`~soniox_widget.access.AccessPolicy`.
        allowed_origins: ``Origin`` values accepted besides this server's own
            origin; ``["*"]`` accepts any (not recommended). Clients without an
            ``Origin`` header (scripts, not browsers) are accepted.
        token: the access token every request must carry (``?token=``,
            ``Authorization: Token ...`` or the page's cookie). Required when
            ``host`` is not a loopback address; optional on loopback.
        require_token: ``False`` lets a non-loopback bind run without a token, for a
            deployment behind a gateway that authenticates (a warning is logged).
        max_sessions: sessions allowed at once; a client over it gets a 429 reply.
        max_frame_bytes: the largest audio frame accepted.
        finish_timeout: seconds to wait for the upstream's last replies after the
            client ended its stream.
        idle_timeout: seconds a client may send nothing (no audio, no control
            message) before it gets a 408 error and its session is closed; a
            ``{"type": "keepalive"}`` resets it. ``None`` or 0 never times out.
        compression: ``"deflate"`` accepts permessage-deflate from clients and offers
            it upstream; ``None`` (the default) relays uncompressed frames both ways:
            audio does not compress and replies are small, and deflate cost the proxy
            about a fifth more CPU per message in ``benchmarks/bench_proxy.py``.
        metrics: serve Prometheus metrics at ``/metrics`` (needs prometheus-client).
        log_format: the per-session log lines as ``"text"`` or ``"json"``.

    Example::

        token = secrets.token_urlsafe(32)
        async with ProxyServer(choose_backend(), host="0.0.0.0", token=token) as proxy:
            print("open", proxy.page_url)   # holds the token: print it, never log it
    """

    def __init__(
        self,
        backend: Backend,
        config: SonioxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        token: str | None = None,
        require_token: bool = True,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        finish_timeout: float = 30.0,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        compression: str | None = None,
        metrics: bool = False,
        log_format: str = "text",
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be 1 or more")
        super().__init__(host, port, ServiceState(
            "proxy", max_sessions=max_sessions,
            metrics=ServiceMetrics("proxy") if metrics else None, log_format=log_format))
        self.backend = backend
        self.config = config or SonioxConfig()
        # Built now so that a bad name fails before listening; start() sets the port.
        self.access = AccessPolicy(bind_host=host, port=port,
                                   allowed_hosts=tuple(allowed_hosts),
                                   allowed_origins=tuple(allowed_origins))
        self._token = _checked_token(token, host, require_token)
        self.max_sessions = max_sessions
        self.max_frame_bytes = max_frame_bytes
        self.finish_timeout = finish_timeout
        if idle_timeout is not None and idle_timeout < 0:
            raise ValueError("idle_timeout must be a non-negative number of seconds")
        self.idle_timeout = idle_timeout
        if compression not in (None, "deflate"):
            raise ValueError('compression must be None or "deflate"')
        self.compression = compression
        self.sessions_started = 0
        # The client connections of running sessions, for the end of a drain.
        self._live: dict[ServerConnection, _Outcome] = {}

    @property
    def open_sessions(self) -> int:
        """Sessions running now; never more than ``max_sessions``."""
        return self.service.active

    @property
    def token_required(self) -> bool:
        return self._token is not None

    @property
    def url(self) -> str:
        """The page's address, without the token (a wildcard bind shows as loopback)."""
        return f"http://{self._browse_host()}:{self.port}/"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, without the token (send it as a header or ``?token=``)."""
        return f"ws://{self._browse_host()}:{self.port}/ws"

    @property
    def page_url(self) -> str:
        """The address to open in a browser: :attr:`url` plus ``?token=`` when one is
        required. It holds the secret: print it once, never log it."""
        return self.url + (f"?token={self._token}" if self._token else "")

    def _browse_host(self) -> str:
        host = self.host.strip("[]")
        if host in ("", "0.0.0.0"):
            return "127.0.0.1"  # listening everywhere: loopback is one of the ways in
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    @property
    def _cookie_name(self) -> str:
        # Cookies ignore the port: with the port in its name, two proxies on one
        # machine don't overwrite each other's token.
        return f"soniox_proxy_token_{self.port}"

    async def start(self) -> ProxyServer:
        await self._listen_frames(
            self._handle,
            process_request=self._process_request,
            # Frames a little over the cap still arrive, so the client gets a JSON
            # error that says what to do; far larger ones are cut off by websockets.
            max_size=self.max_frame_bytes * 2,
            compression=self.compression,
            server_header="soniox-widget-proxy",
        )
        self.access.port = self.port  # the real one, also when port=0 picked it
        logger.info("proxy (%s) listening on %s%s", self.backend.label, self.url,
                    " (an access token is required)" if self._token else "")
        return self

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    # -- HTTP: who may come in, the page, and the WebSocket upgrade -------------------------

    def _process_request(self, connection: ServerConnection, request: Request
                         ) -> Response | None:
        """Every request passes here first: page files and WebSocket upgrades alike.

        Refusals (400, 421, 403, 401) happen before any session exists; health checks
        are answered before any of them.
        """
        health = self.service.respond(request)
        if health is not None:
            return health
        headers = request.headers
        if len(headers.get_all("Host")) != 1 or len(headers.get_all("Origin")) > 1:
            return connection.respond(http.HTTPStatus.BAD_REQUEST,
                                      "one Host header and at most one Origin header\n")
        refusal = self.access.check(headers)
        if refusal is not None:
            status, text = refusal
            logger.warning("refused a request with Host %r and Origin %r (%d)",
                           headers.get("Host"), headers.get("Origin"), status)
            return connection.respond(http.HTTPStatus(status), text)
        carried_by = self._token_carrier(request)
        if self._token is not None and carried_by is None:
            logger.warning("refused a request without the access token (401); "
                           "this proxy requires one")
            response = connection.respond(
                http.HTTPStatus.UNAUTHORIZED,
                "this proxy requires its access token: open the URL with ?token=... "
                "that soniox-proxy printed when it started "
                "(scripts: send 'Authorization: Token <token>')\n")
            response.headers["WWW-Authenticate"] = "Token"
            return response
        path = urlsplit(request.path).path
        if "websocket" not in ",".join(headers.get_all("Upgrade")).lower():
            return self._page(connection, path, set_cookie=carried_by in ("query", "header"))
        if path not in WS_PATHS:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no WebSocket endpoint here\n")
        if not self.service.accepting:
            # A balancer retries this on another replica (HAProxy: retry-on 503).
            self.service.refused("draining", connection.remote_address)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "this proxy is draining; connect to another one\n")
        return None

    def _token_carrier(self, request: Request) -> str | None:
        """How the request carries the right token: "query", "header" or "cookie" (None:
        it does not, or no token is set)."""
        if self._token is None:
            return None
        query = parse_qs(urlsplit(request.path).query).get("token", [])
        if any(self._is_token(value) for value in query):
            return "query"
        # Bearer only on the Soniox path, where a Soniox client (SONIOX_WS_URL) sends the
        # token as its API key; everywhere else the scheme is Token, as before.
        schemes = ("token", "bearer") if urlsplit(request.path).path == WS_PATH else ("token",)
        for value in request.headers.get_all("Authorization"):
            scheme, _, credential = value.strip().partition(" ")
            if scheme.lower() in schemes and self._is_token(credential.strip()):
                return "header"
        for value in request.headers.get_all("Cookie"):
            for pair in value.split(";"):
                name, _, cookie = pair.strip().partition("=")
                if name == self._cookie_name and self._is_token(cookie):
                    return "cookie"
        return None

    def _is_token(self, candidate: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(candidate.encode(), self._token.encode())

    def _page(self, connection: ServerConnection, path: str, *, set_cookie: bool) -> Response:
        entry = _PAGE_FILES.get(path)
        body = _page_file(entry[0]) if entry else None
        if entry is None or body is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        headers = Headers([
            ("Content-Type", entry[1]),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            # The first URL carries ?token=: don't pass it on to anyone else.
            ("Referrer-Policy", "no-referrer"),
        ])
        if set_cookie and self._token is not None:
            # The page's own files (style.css, app.js) and reloads then need no token
            # in their URLs. HttpOnly: the page's script never reads it; Strict: other
            # sites' requests don't carry it.
            headers["Set-Cookie"] = (f"{self._cookie_name}={self._token}; HttpOnly; "
                                     "SameSite=Strict; Path=/")
        return Response(200, "OK", headers, body)

    # -- one client ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        # Counted before the first await, so no two clients can both take the last place.
        service = self.service
        if self.open_sessions >= self.max_sessions or not service.accepting:
            if not service.accepting:  # raced the drain: restart the request elsewhere
                service.refused("draining", ws.remote_address)
                _send_error(ws, 503, DRAIN_MESSAGE)
            else:
                logger.warning("refused a client: %d sessions are open, the limit",
                               self.max_sessions)
                service.refused("max_sessions", ws.remote_address)
                _send_error(ws, 429, f"the proxy is at its limit of {self.max_sessions} "
                            "concurrent sessions; try again later")
            await ws.wait_closed()
            return
        ticket = service.open_session(ws.remote_address)
        outcome = self._live[ws] = _Outcome()
        try:
            await self._session(ws, ticket, outcome)
        finally:
            del self._live[ws]
            service.close_session(ticket, outcome.reason, outcome.error_code)

    async def _end_for_restart(self) -> int:
        live = list(self._live.items())
        for ws, outcome in live:
            outcome.drained = True
            _send_error(ws, 503, DRAIN_MESSAGE)  # the session's wait ends on the close
        return len(live)

    async def _start_message(self, ws: ServerConnection
                             ) -> tuple[SonioxConfig | None, list[str | bytes], int | None]:
        """On the Soniox path, the client's start message as a config, and any frames
        that came after it meanwhile; else None and the error code it was answered
        with (None: the client went away)."""
        frames: list[str | bytes] = []
        arrived = asyncio.Event()

        def take(frame: str | bytes) -> None:
            frames.append(frame)
            arrived.set()

        ws.on_message = take
        waiter = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait({waiter, ws.closed}, timeout=self.idle_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ws.on_message = None
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        if not frames:
            if ws.closed.done():
                return None, frames, None
            _send_error(ws, 408, "no start message received; send the JSON "
                        "configuration first")
            return None, frames, 408
        try:
            message = dict(parse_start_message(frames[0]).config)
            message.pop("api_key", None)  # the proxy's key is used, never the client's
            return SonioxConfig.from_start_message(message), frames[1:], None
        except (ProtocolError, ConfigError) as exc:
            _send_error(ws, 400, f"invalid start message: {exc}")
            return None, frames, 400

    async def _session(self, ws: ServerConnection, ticket: SessionTicket,
                       outcome: _Outcome) -> None:
        """One client's session: frames come in by callback (:class:`_ClientFrames`),
        replies go out from the upstream's reading (``on_text``); this task only waits
        for either side to end, then reports and closes."""
        self.sessions_started += 1
        config, early = self.config, []
        assert ws.request is not None
        if urlsplit(ws.request.path).path == WS_PATH:
            start, early, code = await self._start_message(ws)
            if start is None:
                outcome.ended(EndReason.CLIENT_GONE if code is None else EndReason.ERROR,
                              code)
                await ws.wait_closed()
                return
            config = start
        service = self.service

        def on_state(state: SessionState) -> None:
            if state is SessionState.RECONNECTING:
                service.reconnected(ticket)

        try:
            # The backend as chosen once for the proxy: for the local engine its
            # server starts on the first connect, off the event loop.
            session = UpstreamSession(
                config,
                backend=self.backend,
                finish_timeout=self.finish_timeout,
                # Replies go to the client as the server sent them (key masked),
                # from the code that reads them: no parsing, encoding or hand-over.
                on_text=_relay_to(ws, service, ticket),
                on_state=on_state,
                compression=self.compression,
                # The upstream takes audio slowly: stop reading the client meanwhile
                # (``frames`` exists before the session starts, so before this runs).
                on_send_paused=lambda paused: frames.hold(paused),
            )
        except SonioxWidgetError as exc:  # the proxy's own setup, not the client's fault
            logger.error("cannot open an upstream session: %s", exc)
            outcome.ended(EndReason.ERROR, 500)
            _send_error(ws, 500, str(exc))
            await ws.wait_closed()
            return
        frames = _ClientFrames(ws, session, self.max_frame_bytes, ticket)
        # Sends the 408 and closes the connection, which ends the wait below.
        frames.watchdog = IdleWatchdog(self.idle_timeout, frames.idle)
        finished = asyncio.ensure_future(session.wait_finished())
        try:
            # The client reads slowly: stop reading the upstream meanwhile.
            ws.on_pause_writing = session.pause_reading
            ws.on_resume_writing = session.resume_reading
            frames.watchdog.start()
            session.start()
            for frame in early:  # sent right after the start message, before this ran
                frames.on_message(frame)
            ws.on_message = frames.on_message
            await asyncio.wait({finished, ws.closed}, return_when=asyncio.FIRST_COMPLETED)
            if finished.done():
                exc = finished.exception()
                if isinstance(exc, SonioxError):
                    outcome.ended(EndReason.ERROR, exc.error_code)
                    _send_error(ws, exc.error_code, str(exc))
                elif exc is not None:
                    outcome.ended(EndReason.ERROR, 500)
                    logger.error("proxy relay crashed", exc_info=exc)
                    _send_error(ws, 500, "internal error in the proxy")
                else:
                    outcome.ended(EndReason.FINISHED)
                    ws.close()
            elif outcome.drained:
                outcome.ended(EndReason.DRAINED)
            elif self._server is None:  # stop(): this side closed the client (1001)
                outcome.ended(EndReason.STOPPED)
                logger.info("the proxy is stopping: closed a client's session before it "
                            "finished")
            elif frames.error_code is not None:
                outcome.ended(EndReason.ERROR, frames.error_code)
            else:
                outcome.ended(EndReason.CLIENT_GONE)
                if not frames.done:
                    logger.info("proxy client went away before the session finished")
        finally:
            ws.on_message = ws.on_pause_writing = ws.on_resume_writing = None
            await frames.watchdog.aclose()
            finished.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await finished
            await session.aclose()
            ws.close()
            await ws.wait_closed()


class _Outcome:
    """How a proxy session ended, for its log line and metrics."""

    def __init__(self) -> None:
        self.reason = EndReason.STOPPED
        self.error_code: int | None = None
        self.drained = False  # ended by the drain's 503

    def ended(self, reason: EndReason, error_code: int | None = None) -> None:
        self.reason = reason
        self.error_code = error_code if reason is EndReason.ERROR else None


class _ClientFrames:
    """Client → upstream: each frame, handed over by the connection as it is read.

    Audio (nearly every frame) goes straight to the session; control messages are
    parsed; a broken frame gets a 400 and a close. Once the client ended its stream,
    was refused, or the session failed, later frames are dropped: the client now only
    listens (the session's end is reported by :meth:`ProxyServer._session`).
    """

    def __init__(self, ws: ServerConnection, session: UpstreamSession,
                 max_frame_bytes: int, ticket: SessionTicket) -> None:
        self.ws = ws
        self.session = session
        self.max_frame_bytes = max_frame_bytes
        self.ticket = ticket
        self.watchdog: IdleWatchdog
        self.done = False  # no more frames are taken from the client
        self.error_code: int | None = None  # the error this side sent the client

    def on_message(self, frame: str | bytes) -> None:
        if self.done:
            return
        session = self.session
        if session.error is not None or self.watchdog.expired:
            self._stop()
            return
        self.watchdog.touch()  # a keepalive needs nothing more than this
        if type(frame) is bytes and 0 < len(frame) <= self.max_frame_bytes:
            self.ticket.audio_bytes += len(frame)
            try:
                session.send_audio(frame)
            except SonioxError:
                self._stop()  # the session failed or closed: its end reports why
            return
        try:
            self._control(frame)
        except _ClientError as exc:
            self._stop()
            self.error_code = 400
            _send_error(self.ws, 400, str(exc))
        except SonioxError:
            self._stop()
        except Exception:
            self._stop()
            logger.exception("proxy session crashed")
            self.error_code = 500
            _send_error(self.ws, 500, "internal error in the proxy")

    def _control(self, frame: str | bytes) -> None:
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
                self.ticket.audio_bytes += len(message.data)
                self.session.send_audio(message.data)
            elif isinstance(message, FinalizeRequest):
                self.session.finalize(message.trailing_silence_ms)
            elif isinstance(message, EndOfStream):
                self._stop()
                self.session.end()
            # KeepaliveMessage: the upstream session sends its own keepalives
        except ConfigError as exc:
            raise _ClientError(str(exc)) from None

    def hold(self, paused: bool) -> None:
        """Flow control: while the upstream takes audio slowly, the client is not read,
        and its silence meanwhile is this side's doing, not idleness."""
        if paused:
            self.ws.pause_reading()
            if not self.done:
                self.watchdog.stop()
        else:
            self.ws.resume_reading()
            if not self.done:
                self.watchdog.start()  # counts from now

    def _stop(self) -> None:
        self.done = True
        self.watchdog.stop()  # the client only listens now

    async def idle(self) -> None:
        self.done = True
        self.error_code = 408
        _send_error(self.ws, 408, f"no audio or keepalive from the client for "
                    f"{self.watchdog.timeout:g} s; the session was closed")


class _ClientError(Exception):
    """The proxy client broke the protocol."""


def _checked_token(token: str | None, host: str, require_token: bool) -> str | None:
    """The token to require, or None; refuses a bind beyond loopback without one."""
    if token is not None:
        if not _TOKEN_CHARS.fullmatch(token):  # never echo it: it is a secret
            raise ValueError("the access token may contain only letters, digits and - . _ ~ "
                             "(e.g. from secrets.token_urlsafe(32))")
        register_secret(token)  # masked in every log record and error text from now on
        return token
    if is_loopback(host):
        return None
    if require_token:
        raise ValueError(
            f"the proxy would listen on {host}, beyond this machine, and anyone who reaches "
            "it could spend your key: give it an access token (token=secrets.token_urlsafe"
            "(32); the command line makes one), or pass require_token=False only behind a "
            "gateway that authenticates its users")
    logger.warning("the proxy listens on %s without an access token: anyone who can "
                   "reach it spends your key; only do this behind a gateway that "
                   "authenticates its users", host)
    return None


_PROGRESS_NUMBER = re.compile(r"\s*:\s*(\d+)")


def _progress(text: str, key: str) -> int | None:
    """``final_audio_proc_ms`` or ``total_audio_proc_ms`` of a reply, without parsing
    it all (the fields come last; the proxy relays replies as they came)."""
    at = text.rfind(key)
    if at < 0:
        return None
    number = _PROGRESS_NUMBER.match(text, at + len(key))
    return int(number.group(1)) if number else None


def _relay_to(ws: ServerConnection, service: ServiceState,
              ticket: SessionTicket) -> Callable[[str], None]:
    """The ``on_text`` of a client's session: each reply goes straight to the client
    (written from the upstream's ``data_received``; flow control is the session's
    ``pause_reading``, driven by the client connection's write buffer). How far the
    audio was heard and made final is read for the metrics and the session's log line."""
    loop = asyncio.get_running_loop()

    def relay_text(text: str) -> None:
        if ws.open:  # else the client went away: its session is being closed
            ws.send_text(text)
        total = _progress(text, '"total_audio_proc_ms"')
        if total is not None:
            now = loop.time()
            service.heard(ticket, total, now)
            final = _progress(text, '"final_audio_proc_ms"')
            if final is not None:
                service.final(ticket, final, now)
    return relay_text


def _send_error(ws: ServerConnection, code: int | None, message: str) -> None:
    """Send an error reply and start closing (nothing if the connection is not open)."""
    if ws.open:
        ws.send_text(Reply(error_code=code, error_message=message).dumps())
    ws.close()
