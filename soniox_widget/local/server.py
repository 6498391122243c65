"""A Soniox-compatible real-time WebSocket server on 127.0.0.1.

It speaks the same protocol as ``wss://stt-rt.soniox.com/transcribe-websocket``:
same path, the same ways to send the key, the same start-message validation with
``error_code``/``error_message`` replies, the same reply shapes, ``finalize``,
``keepalive`` and ``finished``. What turns audio into tokens is a pluggable
:class:`~soniox_widget.local.engine.Engine`.

Who may connect:

* **Host and Origin** (:class:`~soniox_widget.access.AccessPolicy`): a web page the
  user has open can reach 127.0.0.1 too. A handshake whose ``Host`` is a foreign name
  (DNS rebinding) gets 421, one whose ``Origin`` is not allowed gets 403, before
  anything else. Python and SDK clients send no ``Origin`` and are not affected;
  browsers must be on an origin passed as ``allowed_origins``.
* **The key** (only when the server has one), as Soniox takes it: the
  ``Authorization: Bearer <key>`` header; the WebSocket subprotocols
  ``["soniox-api-key", <key>]`` (browsers, which cannot set headers; the server
  answers with the ``soniox-api-key`` subprotocol, never the key); or, until
  :data:`START_MESSAGE_KEY_CUTOFF`, ``api_key`` in the start message. A key sent with
  the connection is checked at the handshake (HTTP 401); a connection without one is
  accepted and must send the key in its start message, else it gets a 401 error
  reply. From the cut-off on, ``api_key`` in the start message is refused with a 400
  and a connection without a key with HTTP 401.

The key is never stored, echoed or logged: ``websockets``' own DEBUG log of the
handshake headers and of incoming frames goes through :class:`SecretFreeLogger`.

As a service (:mod:`soniox_widget.service`): ``GET /healthz``, ``/readyz`` and, with
``metrics=True``, ``/metrics`` are answered before any other check, without a key;
``max_sessions`` bounds the sessions at once (more get a 429 error reply); one log line
per session start and end; :meth:`drain` ends what is left with a 503 "restart the
request", which the package's clients answer by resuming elsewhere.

Example::

    async with LocalSonioxServer(engine) as server:
        session = UpstreamSession(url=server.url)

    with LocalSonioxServer(engine) as server:   # runs on a background thread
        transcribe_file("speech.wav", url=server.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import http
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.frames import DATA_OPCODES, Frame
from websockets.headers import parse_subprotocol
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from .._serving import IdleWatchdog, WebSocketService
from ..access import AccessPolicy
from ..auth import APIKey, KeyRing
from ..config import SonioxConfig
from ..errors import ConfigError
from ..protocol import (
    WS_PATH,
    AudioFrame,
    EndOfStream,
    FinalizeRequest,
    KeepaliveMessage,
    ProtocolError,
    Reply,
    error_reply,
    parse_client_message,
    parse_start_message,
)
from ..service import DRAIN_MESSAGE, EndReason, ServiceMetrics, ServiceState, SessionTicket
from ..session.ledger import raw_frame_bytes
from .engine import Engine, EngineError, EngineStream

logger = logging.getLogger(__name__)

#: Soniox closes a session that receives neither audio nor keepalive for a while.
DEFAULT_IDLE_TIMEOUT = 20.0
MAX_FRAME_BYTES = 4 * 1024 * 1024

#: The subprotocol that carries the key in a browser's WebSocket protocols list.
KEY_SUBPROTOCOL = "soniox-api-key"

#: From this day (UTC) Soniox refuses ``api_key`` in the start message.
START_MESSAGE_KEY_CUTOFF = datetime.date(2027, 1, 15)
_CUTOFF_TEXT = "15 January 2027"  # the same day, in words (no locale-dependent %B)

_SEND_THE_KEY = ("send it with the connection: the Authorization: Bearer <key> header, or the "
                 f"WebSocket subprotocols {KEY_SUBPROTOCOL}, <key>")

KeyTransport = Literal["header", "subprotocol", "start_message"]


def utc_today() -> datetime.date:
    """Today's date in UTC (the server asks this when it sees a start-message key)."""
    return datetime.datetime.now(datetime.timezone.utc).date()


@dataclass(frozen=True)
class _ConnectionKeys:
    """The keys a handshake carried (its repr leaves them out)."""

    header: str | None = field(default=None, repr=False)
    has_header: bool = False
    subprotocol: str | None = field(default=None, repr=False)
    has_subprotocol: bool = False

    @property
    def transport(self) -> KeyTransport | None:
        if self.has_header:
            return "header"
        if self.has_subprotocol:
            return "subprotocol"
        return None


def _connection_keys(headers: Headers) -> _ConnectionKeys:
    """Read the key from the Bearer header and the subprotocols list.

    Raises ``ValueError`` (without the header's text) when the subprotocols header is
    not a list of tokens: websockets' own parser would put the header, key and all,
    in its error response and log.
    """
    has_header = "Authorization" in headers
    header = None
    if has_header:
        auth = headers["Authorization"]
        header = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    offered: list[str] = []
    try:
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            offered.extend(parse_subprotocol(value))
    except InvalidHeader:
        raise ValueError("invalid Sec-WebSocket-Protocol header") from None
    has_subprotocol = KEY_SUBPROTOCOL in offered
    subprotocol = None
    if has_subprotocol:
        at = offered.index(KEY_SUBPROTOCOL) + 1
        subprotocol = offered[at] if at < len(offered) else None
    return _ConnectionKeys(header, has_header, subprotocol, has_subprotocol)


class SecretFreeLogger(logging.LoggerAdapter):
    """``websockets``' connection logger, minus anything that may carry a *wrong* key.

    At DEBUG, ``websockets`` logs every handshake header and the start of every frame.
    The package's :mod:`~soniox_widget.redaction` filter masks registered keys (the
    server's own) and credential-shaped header values; a key a client got wrong is
    not registered anywhere, and may sit in a start message (``"api_key": ...``) or
    after the marker in an unusual order. So this adapter withholds, before any
    filter runs, the values of the headers that carry credentials and the payload
    of incoming data frames (audio is unreadable in a log anyway).
    """

    SECRET_HEADERS = frozenset({"authorization", "sec-websocket-protocol", "cookie",
                                "proxy-authorization"})

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if args:
            args = self._withhold(msg, args)
        kwargs.setdefault("stacklevel", 2)  # the record names websockets' line, not this one
        self.logger.log(level, msg, *args, **kwargs)

    def _withhold(self, msg: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if (msg == "< %s: %s" and len(args) == 2 and isinstance(args[0], str)
                and args[0].lower() in self.SECRET_HEADERS):
            return (args[0], "[withheld]")
        if msg == "< %s" and len(args) == 1 and isinstance(args[0], Frame):
            frame = args[0]
            if frame.opcode in DATA_OPCODES:
                return (f"{frame.opcode.name} [{len(frame.data)} bytes, withheld]",)
        return args


@dataclass
class SessionRecord:
    """What the server saw of one connection; tests count bytes and check order here.

    ``authorized_by`` says how the client sent its key: ``"header"``,
    ``"subprotocol"``, ``"start_message"``, or None when it sent none (checked when
    the server requires a key). ``start_message`` never holds the key.
    """

    start_message: dict[str, Any] | None = None
    authorized_by: KeyTransport | None = None
    user: str | None = None  # whose key it was, with a KeyRing
    audio_bytes: int = 0
    audio_frames: int = 0
    audio: bytearray | None = None
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)
    finalize_requests: int = 0
    keepalives: int = 0
    replies_sent: int = 0
    finished: bool = False
    error: tuple[int, str] | None = None
    client_went_away: bool = False
    drained: bool = False  # ended by a drain's 503 (restart the request)
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def end_reason(self) -> EndReason:
        if self.finished:
            return EndReason.FINISHED
        if self.drained:
            return EndReason.DRAINED
        if self.error is not None:
            return EndReason.ERROR
        return EndReason.CLIENT_GONE if self.client_went_away else EndReason.STOPPED

    @property
    def audio_sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def authorized_by_header(self) -> bool:
        return self.authorized_by == "header"


class LocalSonioxServer(WebSocketService):
    """A Soniox-compatible server; see the module docstring.

    Args:
        engine: the recognizer shared by all sessions.
        host: interface to bind; 127.0.0.1 by default (never expose it by accident).
        port: 0 picks a free port.
        api_key: when set, connections must present it, as Soniox takes it (see the
            module docstring); a :class:`~soniox_widget.auth.KeyRing` gives each user
            a key of their own (and names the user in the session's log line).
        record_audio: keep each session's audio bytes in :attr:`sessions` (tests).
        idle_timeout: seconds without audio or keepalive (or, at first, without the
            start message) before a 408 error; ``None`` never times out.
        allowed_origins: browser origins accepted besides the server's own
            (``"https://app.example"``; ``"*"`` any); clients that send no ``Origin``
            (Python, SDKs) are always accepted.
        allowed_hosts: ``Host`` names accepted besides the bound address, loopback
            names and IP addresses (``"*"`` any).
        today: returns today's UTC date, to decide whether ``api_key`` in the start
            message is still accepted (tests); :func:`utc_today` by default.
        max_sessions: sessions at once; more get a 429 error reply, and ``/readyz``
            says not ready while at the limit (None: no limit).
        metrics: serve Prometheus metrics at ``/metrics`` (needs prometheus-client).
        log_format: the per-session log lines as ``"text"`` or ``"json"``.
        keep_sessions: how many of the latest sessions :attr:`sessions` keeps; older
            records are let go, so a long-lived engine's memory stays flat.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | APIKey | KeyRing | None = None,
        record_audio: bool = False,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        today: Callable[[], datetime.date] | None = None,
        max_sessions: int | None = None,
        metrics: bool = False,
        log_format: str = "text",
        keep_sessions: int = 1000,
    ) -> None:
        service_metrics = (ServiceMetrics("local", engine_queue_depth=lambda: engine.queue_depth)
                           if metrics else None)
        super().__init__(host, port, ServiceState("local", max_sessions=max_sessions,
                                                  metrics=service_metrics,
                                                  log_format=log_format))
        self.engine = engine
        self._key = APIKey(api_key) if isinstance(api_key, str) else api_key
        # Built now so that a bad origin or host fails here; the port is set on start.
        self._access = AccessPolicy(bind_host=host, port=port,
                                    allowed_hosts=tuple(allowed_hosts),
                                    allowed_origins=tuple(allowed_origins))
        self._today = today
        self.record_audio = record_audio
        self.idle_timeout = idle_timeout
        #: The latest sessions' records (at most ``keep_sessions``), oldest first.
        self.sessions: list[SessionRecord] = []
        self.keep_sessions = keep_sessions
        self._open: dict[ServerConnection, SessionRecord] = {}
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        if self._server is None and self._thread_loop is None:
            raise RuntimeError("the server is not running; use 'async with' or 'with' first")
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    @property
    def label(self) -> str:
        return self.engine.label

    # -- asyncio lifecycle --------------------------------------------------------------

    async def start(self) -> LocalSonioxServer:
        if self._server is not None:
            return self
        await self._listen(
            self._handle,
            process_request=self._check_request,
            select_subprotocol=self._select_subprotocol,
            logger=SecretFreeLogger(logging.getLogger("websockets.server")),
            max_size=MAX_FRAME_BYTES,
            ping_interval=20,
            ping_timeout=20,
            server_header="soniox-widget-local",
        )
        self._access.port = self.port
        logger.info("local Soniox-compatible server (%s) on %s", self.engine.label, self.url)
        return self

    # -- thread lifecycle (for scripts and blocking code) ------------------------------

    def start_in_thread(self) -> LocalSonioxServer:
        """Run the server on its own event loop in a daemon thread; returns when listening."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.run_until_complete(self.engine.aclose())
                loop.close()

        self._thread = threading.Thread(target=run, name="soniox-local-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            self._thread_loop = None
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._thread_loop = None

    def __enter__(self) -> LocalSonioxServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # -- handshake ---------------------------------------------------------------------

    def start_message_keys_accepted(self) -> bool:
        """Whether ``api_key`` in the start message is still taken (before the cut-off)."""
        today = (self._today or utc_today)()
        return today < START_MESSAGE_KEY_CUTOFF

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        health = self.service.respond(request)
        if health is not None:
            return health
        for name in ("Host", "Origin", "Authorization"):
            if len(request.headers.get_all(name)) > 1:
                return connection.respond(http.HTTPStatus.BAD_REQUEST,
                                          f"more than one {name} header\n")
        refusal = self._access.check(request.headers)
        if refusal is not None:
            status, body = refusal
            logger.warning("refused a connection (%d): Host %r, Origin %r", status,
                           request.headers.get("Host"), request.headers.get("Origin"))
            return connection.respond(status, body)
        path = request.path.split("?", 1)[0]
        if path != WS_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      f"no WebSocket endpoint at {path}; use {WS_PATH}\n")
        try:
            keys = _connection_keys(request.headers)
        except ValueError as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if not self.service.accepting:
            # A balancer retries this on another replica (HAProxy: retry-on 503).
            self.service.refused("draining", connection.remote_address)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "this server is draining; connect to another one\n")
        if self._key is None:
            return None
        if keys.transport is None:
            if self.start_message_keys_accepted():
                return None  # the key may come in the start message; checked there
            logger.info("refused a connection without an API key")
            return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                      f"missing API key; {_SEND_THE_KEY}\n")
        # Every key the client sent must be the right one.
        presented = ([keys.header] if keys.has_header else []) + (
            [keys.subprotocol] if keys.has_subprotocol else [])
        if not all(self._key.matches(key) for key in presented):
            logger.info("refused a connection: invalid API key in the %s", keys.transport)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                      f"missing or invalid API key; {_SEND_THE_KEY}\n")
        return None

    @staticmethod
    def _select_subprotocol(connection: ServerConnection,
                            offered: Sequence[Subprotocol]) -> Subprotocol | None:
        # Answer with the marker, never with the key that follows it; a client that
        # offers other subprotocols only goes on without one, like most servers.
        return Subprotocol(KEY_SUBPROTOCOL) if KEY_SUBPROTOCOL in offered else None

    # -- one session -------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        service = self.service
        limit = service.max_sessions
        if (limit is not None and service.active >= limit) or not service.accepting:
            why = "draining" if not service.accepting else f"at its limit of {limit} sessions"
            service.refused(why, ws.remote_address)
            # 503 while draining: the client restarts the request on another replica.
            code, text = ((503, DRAIN_MESSAGE) if not service.accepting else
                          (429, f"the server is {why}; try again later or another server"))
            with contextlib.suppress(ConnectionClosed):
                await ws.send(error_reply(code, text).dumps())
                await ws.close()
            return
        ticket = service.open_session(ws.remote_address)
        record = SessionRecord(audio=bytearray() if self.record_audio else None)
        assert ws.request is not None
        keys = _connection_keys(ws.request.headers)
        record.authorized_by = keys.transport
        record.user = self._user_of(keys.header or keys.subprotocol)
        self.sessions.append(record)
        if len(self.sessions) > self.keep_sessions:
            del self.sessions[: len(self.sessions) - self.keep_sessions]
        self._open[ws] = record
        try:
            await self._session(ws, record, ticket)
        finally:
            del self._open[ws]
            ticket.user = record.user
            service.close_session(ticket, record.end_reason,
                                  record.error[0] if record.error else None)

    async def _end_for_restart(self) -> int:
        ending = {}
        for ws, record in list(self._open.items()):
            if record.error is None and not record.finished:
                record.drained = True
                ending[ws] = asyncio.ensure_future(
                    self._send_error(ws, record, 503, DRAIN_MESSAGE))
        if ending:
            # A client that stopped reading cannot hold the drain: stop() cuts it.
            _, late = await asyncio.wait(ending.values(), timeout=self.RESTART_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*ending.values(), return_exceptions=True)
        return len(ending)

    async def _session(self, ws: ServerConnection, record: SessionRecord,
                       ticket: SessionTicket) -> None:
        stream: EngineStream | None = None
        pump: asyncio.Task[None] | None = None
        # Sends the 408 and closes the connection, which ends the pending recv().
        watchdog = IdleWatchdog(self.idle_timeout, lambda: self._expire(ws, record))
        watchdog.start()
        try:
            opened = await self._open_stream(ws, record, watchdog)
            if opened is None:
                return
            stream, bytes_per_ms = opened
            pump = asyncio.create_task(self._pump(ws, stream, record, ticket, bytes_per_ms))
            await self._receive(ws, stream, record, pump, watchdog, ticket, bytes_per_ms)
            watchdog.stop()  # the client ended its stream (or the session is over)
            if not watchdog.expired:
                await pump
        except ConnectionClosed:
            # Also how the receive loop learns that the pump or the watchdog closed
            # the connection; only a session that ended without a reply is the client's.
            record.client_went_away = not record.finished and record.error is None
        except ProtocolError as exc:
            watchdog.stop()
            await self._send_error(ws, record, 400, str(exc))
        except EngineError as exc:
            watchdog.stop()
            await self._send_error(ws, record, exc.error_code, exc.error_message)
        except Exception:
            watchdog.stop()
            logger.exception("local server session crashed")
            await self._send_error(ws, record, 500, "internal error in the local engine")
        finally:
            await watchdog.aclose()
            if pump is not None and not pump.done():
                pump.cancel()
            if pump is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
            record.done.set()

    async def _expire(self, ws: ServerConnection, record: SessionRecord) -> None:
        if record.start_message is None:
            message = "no start message received; send the JSON configuration first"
        else:
            message = (f"no audio or keepalive received for {self.idle_timeout:g} s; "
                       "the session was closed")
        await self._send_error(ws, record, 408, message)

    async def _open_stream(self, ws: ServerConnection, record: SessionRecord,
                           watchdog: IdleWatchdog) -> tuple[EngineStream, float | None] | None:
        """The engine's stream, and the audio's bytes per ms when the format tells it."""
        frame = await ws.recv()
        if watchdog.expired:
            return None
        watchdog.touch()
        message = dict(parse_start_message(frame).config)  # a ProtocolError is a 400
        has_key = "api_key" in message
        presented = message.pop("api_key", None)
        record.start_message = message
        if not await self._authorize_start_message(ws, record, has_key, presented):
            return None
        try:
            config = SonioxConfig.from_start_message(message)
        except ConfigError as exc:
            await self._send_error(ws, record, 400, f"invalid start message: {exc}")
            return None
        self.engine.check_config(config)
        bytes_per_ms = None
        if config.is_raw_audio:
            bytes_per_ms = (config.sample_rate or 16000) * raw_frame_bytes(
                config.audio_format, config.num_channels or 1) / 1000
        return self.engine.open_stream(config), bytes_per_ms

    def _user_of(self, key: str | None) -> str | None:
        return self._key.user_of(key) if isinstance(self._key, KeyRing) else None

    async def _authorize_start_message(self, ws: ServerConnection, record: SessionRecord,
                                       has_key: bool, presented: Any) -> bool:
        """Take or refuse ``api_key`` from the start message; False if the session ends."""
        if has_key:
            if not self.start_message_keys_accepted():
                await self._send_error(
                    ws, record, 400, "api_key in the start message is no longer accepted "
                    f"(since {_CUTOFF_TEXT}); {_SEND_THE_KEY}")
                return False
            logger.info("a client sent api_key in the start message: deprecated, and refused "
                        "from %s; %s", _CUTOFF_TEXT, _SEND_THE_KEY)
            if self._key is not None and not (isinstance(presented, str)
                                              and self._key.matches(presented.strip())):
                await self._send_error(ws, record, 401,
                                       f"missing or invalid API key; {_SEND_THE_KEY}")
                return False
            if record.authorized_by is None:
                record.authorized_by = "start_message"
                record.user = self._user_of(presented.strip() if isinstance(presented, str)
                                            else None)
        elif self._key is not None and record.authorized_by is None:
            await self._send_error(ws, record, 401, f"missing or invalid API key; {_SEND_THE_KEY}")
            return False
        return True

    async def _receive(self, ws: ServerConnection, stream: EngineStream,
                       record: SessionRecord, pump: asyncio.Task[None],
                       watchdog: IdleWatchdog, ticket: SessionTicket,
                       bytes_per_ms: float | None) -> None:
        """Client → engine until the client ends the stream.

        No task per message: when the session ends otherwise (the engine finished or
        failed, or the client went silent), whoever ended it closes the connection,
        and ``recv()`` raises ``ConnectionClosed`` (after any frames already queued,
        which are dropped).
        """
        loop = asyncio.get_running_loop()
        while True:
            frame = await ws.recv()
            if pump.done() or watchdog.expired:
                return
            watchdog.touch()
            message = parse_client_message(frame)
            if isinstance(message, AudioFrame):
                data = message.data
                record.audio_bytes += len(data)
                self.service.audio(ticket, len(data), None if bytes_per_ms is None else
                                   int(record.audio_bytes / bytes_per_ms), loop.time())
                record.audio_frames += 1
                record._digest.update(data)
                if record.audio is not None:
                    record.audio.extend(data)
                await stream.push_audio(data)
            elif isinstance(message, EndOfStream):
                await stream.end()
                return
            elif isinstance(message, KeepaliveMessage):
                record.keepalives += 1
            elif isinstance(message, FinalizeRequest):
                record.finalize_requests += 1
                await stream.finalize(message.trailing_silence_ms)

    async def _pump(self, ws: ServerConnection, stream: EngineStream,
                    record: SessionRecord, ticket: SessionTicket,
                    bytes_per_ms: float | None) -> None:
        """Engine → client; closes the connection when the session ends, either way."""
        service, loop = self.service, asyncio.get_running_loop()
        try:
            final_ms = total_ms = 0
            async for update in stream.updates():
                final_ms = max(final_ms, update.final_audio_proc_ms)
                total_ms = max(total_ms, update.total_audio_proc_ms)
                if bytes_per_ms is None:  # a container: the engine says what it heard
                    service.heard(ticket, total_ms, loop.time())
                service.final(ticket, final_ms, loop.time())
                if not update.final and not update.nonfinal:
                    continue
                reply = Reply(
                    tokens=tuple(update.final) + tuple(update.nonfinal),
                    final_audio_proc_ms=final_ms,
                    total_audio_proc_ms=total_ms,
                )
                await ws.send(reply.dumps())
                record.replies_sent += 1
            await ws.send(Reply(final_audio_proc_ms=final_ms, total_audio_proc_ms=total_ms,
                                finished=True).dumps())
            record.replies_sent += 1
            record.finished = True
            await ws.close()
        except ConnectionClosed:
            raise
        except EngineError as exc:
            await self._send_error(ws, record, exc.error_code, exc.error_message)
        except Exception:
            logger.exception("local engine failed")
            await self._send_error(ws, record, 500, "internal error in the local engine")

    async def _send_error(self, ws: ServerConnection, record: SessionRecord,
                          code: int, message: str) -> None:
        if record.error is not None:
            return  # one error per session (e.g. the watchdog's 408 raced an engine error)
        record.error = (code, message)
        logger.info("local server session error %s: %s", code, message)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_reply(code, message).dumps())
            await ws.close()
