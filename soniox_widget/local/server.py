"""A Soniox-compatible real-time WebSocket server on 127.0.0.1.

It speaks the same protocol as ``wss://stt-rt.soniox.com/transcribe-websocket``:
same path, Bearer authentication, the same start-message validation with
``error_code``/``error_message`` replies, the same reply shapes, ``finalize``,
``keepalive`` and ``finished``. What turns audio into tokens is a pluggable
:class:`~soniox_widget.local.engine.Engine`.

Example::

    async with LocalSonioxServer(engine) as server:
        session = UpstreamSession(url=server.url)

    with LocalSonioxServer(engine) as server:   # runs on a background thread
        transcribe_file("speech.wav", url=server.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._serving import IdleWatchdog, WebSocketService
from ..auth import APIKey
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
from .engine import Engine, EngineError, EngineStream

logger = logging.getLogger(__name__)

#: Soniox closes a session that receives neither audio nor keepalive for a while.
DEFAULT_IDLE_TIMEOUT = 20.0
MAX_FRAME_BYTES = 4 * 1024 * 1024


@dataclass
class SessionRecord:
    """What the server saw of one connection; tests count bytes and check order here."""

    start_message: dict[str, Any] | None = None
    authorized_by_header: bool = False
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
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def audio_sha256(self) -> str:
        return self._digest.hexdigest()


class LocalSonioxServer(WebSocketService):
    """A Soniox-compatible server; see the module docstring.

    Args:
        engine: the recognizer shared by all sessions.
        host: interface to bind; 127.0.0.1 by default (never expose it by accident).
        port: 0 picks a free port.
        api_key: when set, connections must present it as ``Authorization: Bearer``.
        record_audio: keep each session's audio bytes in :attr:`sessions` (tests).
        idle_timeout: seconds without audio or keepalive (or, at first, without the
            start message) before a 408 error; ``None`` never times out.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | APIKey | None = None,
        record_audio: bool = False,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        super().__init__(host, port)
        self.engine = engine
        self._key = APIKey(api_key) if isinstance(api_key, str) else api_key
        self.record_audio = record_audio
        self.idle_timeout = idle_timeout
        self.sessions: list[SessionRecord] = []
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
            max_size=MAX_FRAME_BYTES,
            ping_interval=20,
            ping_timeout=20,
            server_header="soniox-widget-local",
        )
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

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != WS_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      f"no WebSocket endpoint at {path}; use {WS_PATH}\n")
        auth = request.headers.get("Authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if self._key is not None and not self._key.matches(presented):
            return connection.respond(
                http.HTTPStatus.UNAUTHORIZED,
                "missing or invalid API key (send Authorization: Bearer <key>)\n")
        return None

    # -- one session -------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        record = SessionRecord(audio=bytearray() if self.record_audio else None)
        record.authorized_by_header = "Authorization" in ws.request.headers
        self.sessions.append(record)
        stream: EngineStream | None = None
        pump: asyncio.Task[None] | None = None
        # Sends the 408 and closes the connection, which ends the pending recv().
        watchdog = IdleWatchdog(self.idle_timeout, lambda: self._expire(ws, record))
        watchdog.start()
        try:
            stream = await self._open(ws, record, watchdog)
            if stream is None:
                return
            pump = asyncio.create_task(self._pump(ws, stream, record))
            await self._receive(ws, stream, record, pump, watchdog)
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

    async def _open(self, ws: ServerConnection, record: SessionRecord,
                    watchdog: IdleWatchdog) -> EngineStream | None:
        frame = await ws.recv()
        if watchdog.expired:
            return None
        watchdog.touch()
        message = parse_start_message(frame).config  # a ProtocolError is a 400
        record.start_message = {k: v for k, v in message.items() if k != "api_key"}
        if "api_key" in message:
            await self._send_error(
                ws, record, 400, "api_key in the start message is no longer accepted; "
                "authenticate with the connection (Authorization: Bearer header)")
            return None
        try:
            config = SonioxConfig.from_start_message(message)
        except ConfigError as exc:
            await self._send_error(ws, record, 400, f"invalid start message: {exc}")
            return None
        self.engine.check_config(config)
        return self.engine.open_stream(config)

    async def _receive(self, ws: ServerConnection, stream: EngineStream,
                       record: SessionRecord, pump: asyncio.Task[None],
                       watchdog: IdleWatchdog) -> None:
        """Client → engine until the client ends the stream.

        No task per message: when the session ends otherwise (the engine finished or
        failed, or the client went silent), whoever ended it closes the connection,
        and ``recv()`` raises ``ConnectionClosed`` (after any frames already queued,
        which are dropped).
        """
        while True:
            frame = await ws.recv()
            if pump.done() or watchdog.expired:
                return
            watchdog.touch()
            message = parse_client_message(frame)
            if isinstance(message, AudioFrame):
                data = message.data
                record.audio_bytes += len(data)
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
                    record: SessionRecord) -> None:
        """Engine → client; closes the connection when the session ends, either way."""
        try:
            final_ms = total_ms = 0
            async for update in stream.updates():
                final_ms = max(final_ms, update.final_audio_proc_ms)
                total_ms = max(total_ms, update.total_audio_proc_ms)
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
