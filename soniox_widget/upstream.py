"""The proxy coroutine: one real-time session with Soniox (or a compatible server).

:class:`UpstreamSession` is the asyncio driver of the pure
:class:`~soniox_widget.session.core.SessionCore`: it opens the connections the
core asks for, sends the frames it produces, feeds it what the server says and
the passing of time, and hands replies to the caller. It makes no decision of
its own; the notebook widget, the standalone proxy and ``transcribe_file`` all
use it.

Example::

    async with UpstreamSession(SonioxConfig(), api_key="...") as session:
        session.send_audio(chunk)          # any time, queued in order
        session.end()                      # end of stream
        async for reply in session.replies():
            print(reply.tokens)

The connections run on :mod:`soniox_widget.transport` (websockets' sans-I/O core
driven from asyncio callbacks): each frame the server sends is fed to the core from
``data_received``, and each frame the core produces is written to the socket at once,
from whatever called the session (no writer task, no receive queue). Each connection
has one task, which opens it and waits for its end. No receive is ever wrapped in
``asyncio.wait_for`` (on Python 3.10/3.11 that can swallow a cancel): all deadlines
are one timer that fires only when something is due, and the connection's own
timers (ping, close) are armed once per ping or close, never per message.

A relay (the standalone proxy) uses the cheap way through: it hands audio over with
:meth:`UpstreamSession.send_audio` from its own client's ``data_received`` and gets
replies through ``on_text``, as the server's own JSON text, from the upstream's
``data_received``; the session reads from a reply only what it acts on. Flow control
joins the two: :meth:`UpstreamSession.pause_reading` while the client reads slowly,
and ``on_send_paused`` when the service takes audio slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from . import transport
from ._deadline import DeadlineTimer
from .auth import APIKey
from .backend import Backend, choose_backend
from .config import SonioxConfig
from .errors import (
    ConfigError,
    ConnectError,
    HandshakeError,
    ProtocolViolationError,
    SessionClosedError,
    SonioxError,
)
from .protocol import Reply
from .session.core import (
    Action,
    CloseConnection,
    DeliverReply,
    DeliverText,
    EndTranscoder,
    FeedTranscoder,
    MarkTranscoder,
    OpenConnection,
    ReconnectPolicy,
    SendFrame,
    SessionCore,
    SessionOver,
    SessionState,
    StartTranscoding,
    StateChanged,
)

logger = logging.getLogger(__name__)

_HANDSHAKE_HINTS = {
    401: "check your SONIOX_API_KEY (it was refused)",
    403: "check your SONIOX_API_KEY and the URL",
    404: "check the URL path (/transcribe-websocket)",
    429: "too many sessions; wait and try again",
}


def _moves_no_deadline_earlier(actions: list[Action]) -> bool:
    """Whether the core's deadlines can only have moved later with these actions.

    An audio frame pushes the keepalive later; a delivered reply changes no deadline
    (the actions of a reply that finishes or fails include more than the delivery).
    Then the armed timer is still right: it fires no later than anything now due, and
    when it fires the core is asked again. Any other action (a control frame such as
    the end of stream, a state change, a new connection) may bring one earlier, and
    no action at all may be the answer to the timer itself, which must be re-armed.
    """
    if not actions:
        return False
    for action in actions:
        kind = type(action)
        if kind is SendFrame:
            frame = action.frame  # type: ignore[union-attr]
            if type(frame) is not bytes or not frame:  # control text, or end of stream
                return False
        elif kind is not DeliverText and kind is not DeliverReply:
            return False
    return True


class UpstreamSession:
    """One recording's session with the service, owning its sockets and tasks.

    It survives dropped connections (see :class:`ReconnectPolicy`): the transcript
    continues on a new connection, on the recording's own clock.

    Args:
        config: session options; default :class:`SonioxConfig()`.
        backend: where to connect, from :func:`~soniox_widget.backend.choose_backend`.
            Without it, ``engine``/``api_key``/``url`` are passed to ``choose_backend``.
        connect_timeout: seconds allowed for the TCP + WebSocket handshake.
        finish_timeout: seconds to wait for ``finished`` after the end of stream.
        keepalive_interval: a keepalive is sent when nothing was sent for this long,
            so a paused session is not closed by the server (Soniox wants one < 20 s).
        reconnect: the reconnect policy; ``ReconnectPolicy(max_attempts=0)`` turns
            reconnecting off.
        on_state: called with each new :class:`SessionState` (on the event loop).
        ping_interval: a WebSocket ping is sent this often and must be answered within
            as long again; a connection that went silent (a stalled network) is then
            treated as dropped, and the session reconnects.
        on_text: for a relay (the standalone proxy): every reply is passed to this
            plain function as JSON text, in order, as the connection reads it,
            instead of through :meth:`replies` (which then only ends or raises). On
            the first connection the text is the server's own frame with the key
            masked: the session reads from it only the fields it acts on and never
            encodes it again. It must not block; a receiver that cannot keep up calls
            :meth:`pause_reading` until it can. :meth:`wait_finished` returns only
            after the last reply was passed on. Exceptions it raises end the session.
        on_send_paused: for a relay: called with ``True`` when the service's
            connection has more unsent data than its buffer limit (it takes audio
            slowly), and with ``False`` when it has room again (or that connection is
            gone), so the relay can stop and resume reading its own client.
        compression: ``"deflate"`` offers permessage-deflate to the server; ``None``
            (the default) sends and receives uncompressed frames. The audio is already
            compressed (Opus) or small, and replies are a few kB per second at most,
            so deflate would cost CPU on both ends for bytes that hardly matter.
    """

    def __init__(
        self,
        config: SonioxConfig | None = None,
        *,
        backend: Backend | None = None,
        api_key: str | APIKey | None = None,
        url: str | None = None,
        engine: str = "auto",
        connect_timeout: float = 10.0,
        finish_timeout: float = 30.0,
        keepalive_interval: float = 5.0,
        reconnect: ReconnectPolicy | None = None,
        on_state: Callable[[SessionState], None] | None = None,
        ping_interval: float = 10.0,
        on_text: Callable[[str], None] | None = None,
        compression: str | None = None,
        on_send_paused: Callable[[bool], None] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, SonioxConfig):
            raise ConfigError(
                f"config must be a SonioxConfig, got {type(config).__name__}; "
                "build one with SonioxConfig(...) or SonioxConfig.from_options({...})"
            )
        self.config = config or SonioxConfig()
        self.backend = backend or choose_backend(engine, api_key=api_key, url=url,
                                                 model=self.config.model)
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.compression = compression
        self._key = self.backend.api_key
        self._core = SessionCore(
            self.config,
            keepalive_interval=keepalive_interval,
            finish_timeout=finish_timeout,
            reconnect=reconnect or ReconnectPolicy(),
            redact=self._redact,
            where=self.backend.label,
            deliver_text=on_text is not None,
        )
        self._on_state = on_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replies: asyncio.Queue[Reply | None] = asyncio.Queue()
        self._on_text = on_text
        self._on_send_paused = on_send_paused
        self._reading_paused = False
        self._conn_tasks: dict[int, asyncio.Task[None]] = {}
        self._sockets: dict[int, transport.ClientConnection] = {}
        self._deadline: DeadlineTimer | None = None
        self._transcoder: Any = None
        self._over = asyncio.Event()
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()  # the core acted: wait_for_room looks again
        self._closed = False

    def __repr__(self) -> str:
        return (f"<UpstreamSession {self.backend.label} {self.state.value} "
                f"connections={self.connections} sent={self.bytes_sent}B>")

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._core.state

    @property
    def error(self) -> SonioxError | None:
        return self._core.error

    @property
    def finished(self) -> bool:
        return self._core.state == SessionState.FINISHED

    @property
    def ended(self) -> bool:
        return self._core.ended

    @property
    def connections(self) -> int:
        """Connections opened so far: 1, plus one per reconnect attempt."""
        return self._core.connections

    @property
    def bytes_queued(self) -> int:
        return self._core.bytes_in

    @property
    def bytes_sent(self) -> int:
        """Audio bytes written to the service (resent audio counts again)."""
        return self._core.bytes_sent

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once (audio may be sent now)."""
        if self._closed:
            raise SessionClosedError("this session was closed; start a new one")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._deadline = DeadlineTimer(
                self._loop, self._core.next_deadline,
                lambda now, _due: self._handle(self._core.tick(now)))
        self._handle(self._core.start(self._now()))

    async def __aenter__(self) -> UpstreamSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop at once: close every socket, cancel every task. Idempotent, prompt."""
        self._closed = True
        if self._loop is not None:
            self._handle(self._core.close(self._now()))
        self._cancel_timer()
        if self._transcoder is not None:
            transcoder, self._transcoder = self._transcoder, None
            await asyncio.to_thread(transcoder.abort)
        sockets = list(self._sockets.values())
        for ws in sockets:
            ws.close()
        tasks = list(self._conn_tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for ws in sockets:  # the closing handshake, cut short after close_timeout
            await ws.wait_closed()
        self._signal_over()

    # -- client → server ------------------------------------------------------------------

    def send_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Queue audio bytes; they are sent in order once connected. Never blocks.

        Raises :class:`SonioxError` after :meth:`end` or once the session is over.
        """
        self._check_usable("send audio")
        self._handle(self._core.audio(bytes(data), self._now()))

    async def write_audio(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`send_audio`, then :meth:`wait_for_room`: for a producer that can wait."""
        self.send_audio(data)
        await self.wait_for_room()

    async def wait_for_room(self) -> None:
        """Wait while the service is not taking audio: connecting or reconnecting
        (:attr:`SessionCore.takes_audio`), or its connection's buffer is full.

        A producer that waits here (files, generators) holds no more than a chunk in
        memory while the service is slow or away, and never outruns what a reconnect
        can resend. Returns at once once the session is over (its failure is raised
        by :meth:`replies`).
        """
        while not self._core.takes_audio:
            self._changed.clear()
            await self._changed.wait()
        ws = self._sockets.get(self._core.current_connection)
        if ws is not None and ws.writing_paused:
            await ws.wait_writable()

    def pause_reading(self) -> None:
        """Stop reading the service's replies (this and later connections) until
        :meth:`resume_reading`: for a relay whose own client reads slowly. Pings
        are not answered meanwhile, so pause for moments, not minutes."""
        self._reading_paused = True
        for ws in self._sockets.values():
            ws.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        for ws in self._sockets.values():
            ws.resume_reading()

    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Ask the server to make everything heard so far final (answered by ``<fin>``)."""
        if trailing_silence_ms is not None and (
            isinstance(trailing_silence_ms, bool) or not isinstance(trailing_silence_ms, int)
            or trailing_silence_ms < 0
        ):
            raise ConfigError("trailing_silence_ms must be a non-negative integer")
        self._check_usable("finalize")
        self._handle(self._core.finalize(trailing_silence_ms, self._now()))

    def pause(self) -> None:
        """The source is paused: keepalives hold the session open until :meth:`resume`."""
        self._handle(self._core.pause(self._now()))

    def resume(self) -> None:
        self._handle(self._core.resume(self._now()))

    def end(self) -> None:
        """End of stream: the server sends the last tokens, then ``finished``."""
        if self._core.ended or self._core.state.is_over:
            return
        self._check_usable("end the stream")
        self._handle(self._core.end(self._now()))

    def _check_usable(self, what: str) -> None:
        if self._closed and not self._core.state.is_over:
            raise SessionClosedError(f"cannot {what}: the session is closed")

    # -- server → client ------------------------------------------------------------------

    async def replies(self) -> AsyncIterator[Reply]:
        """Yield replies (times on the recording's clock) as they arrive; end after
        ``finished``; raise :class:`SonioxError` if the session failed. One consumer."""
        if self._loop is None:
            self.start()
        while True:
            reply = await self._replies.get()
            if reply is None:
                break
            yield reply
        if self.error is not None:
            raise self.error

    async def wait_connected(self) -> None:
        """Wait until the first start message was sent (or raise the failure)."""
        if self._loop is None:
            self.start()
        if not self._connected.is_set():
            waiters = [asyncio.ensure_future(self._connected.wait()),
                       asyncio.ensure_future(self._over.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        if not self._connected.is_set():
            raise self.error or SessionClosedError("the session ended before connecting")

    async def wait_finished(self) -> None:
        """Wait until the session is over (call :meth:`end` first); raise its failure."""
        if self._loop is None:
            self.start()
        await self._over.wait()
        if self.error is not None:
            raise self.error

    # -- carrying out the core's actions ------------------------------------------------

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def _handle(self, actions: list[Action]) -> None:
        failed: Exception | None = None
        for action in actions:
            if isinstance(action, SendFrame):
                ws = self._sockets.get(action.conn)
                if ws is not None and ws.open:  # else closing: the core learns of it
                    ws.send(action.frame)
            elif isinstance(action, DeliverText):
                if failed is None and self._on_text is not None:
                    try:
                        self._on_text(action.text)
                    except Exception as exc:  # ends the session, after this batch
                        failed = exc
            elif isinstance(action, DeliverReply):
                self._replies.put_nowait(action.reply)
            elif isinstance(action, OpenConnection):
                assert self._loop is not None
                self._conn_tasks[action.conn] = self._loop.create_task(
                    self._connection(action.conn), name=f"soniox-upstream #{action.conn}")
            elif isinstance(action, CloseConnection):
                ws = self._sockets.get(action.conn)
                if ws is not None:
                    ws.close()  # its task sees the end and tells the core
                elif (task := self._conn_tasks.get(action.conn)) is not None:
                    task.cancel()  # still connecting
            elif isinstance(action, StateChanged):
                if action.state in (SessionState.STREAMING, SessionState.PAUSED,
                                    SessionState.FINISHING):
                    self._connected.set()
                if self._on_state is not None:
                    try:
                        self._on_state(action.state)
                    except Exception:
                        logger.exception("on_state callback failed")
            elif isinstance(action, StartTranscoding):
                self._start_transcoder(action)
            elif isinstance(action, FeedTranscoder):
                if self._transcoder is not None:
                    self._transcoder.feed(action.data)
            elif isinstance(action, MarkTranscoder):
                if self._transcoder is not None:
                    self._transcoder.mark(action.request)
            elif isinstance(action, EndTranscoder):
                if self._transcoder is not None:
                    self._transcoder.close_input()
            elif isinstance(action, SessionOver):
                self._cancel_timer()
                self._signal_over()  # replies before it were passed on already
                if self._transcoder is not None and action.error is not None:
                    transcoder, self._transcoder = self._transcoder, None
                    # Its thread may take a moment to stop: not on the event loop.
                    asyncio.get_running_loop().run_in_executor(None, transcoder.abort)
        if actions:
            self._changed.set()  # wait_for_room looks again (cheap with no waiter)
        # Audio frames and replies (one per chunk and per reply) skip the deadline
        # timer's look at the core: they can only have moved deadlines later.
        if not _moves_no_deadline_earlier(actions):
            self._arm_timer()
        if failed is not None:
            logger.warning("passing a reply on failed: %r", failed)
            self._handle(self._core.internal_error(self._core.current_connection,
                                                   type(failed).__name__, self._now()))

    def _signal_over(self) -> None:
        self._changed.set()
        if not self._over.is_set():
            self._over.set()
            self._replies.put_nowait(None)

    def _arm_timer(self) -> None:
        if self._deadline is not None and not self._core.state.is_over:
            self._deadline.arm()

    def _cancel_timer(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

    # -- one connection -------------------------------------------------------------------

    async def _connection(self, conn: int) -> None:
        """Open ``conn``, then wait for its end; its frames arrive by callback."""
        try:
            ws = await self._open()
        except SonioxError as exc:
            self._conn_tasks.pop(conn, None)
            self._handle(self._core.connect_failed(conn, exc, self._now()))
            return
        except asyncio.CancelledError:
            self._conn_tasks.pop(conn, None)
            raise
        except Exception as exc:  # a bug, not the network: fail now, never hang
            logger.exception("opening the connection to %s failed", self.backend.label)
            self._conn_tasks.pop(conn, None)
            self._handle(self._core.connect_failed(conn, ProtocolViolationError(
                f"internal error while connecting: {type(exc).__name__}: {exc}"), self._now()))
            return
        self._sockets[conn] = ws
        ws.on_message = self._reader(conn)
        if self._on_send_paused is not None:
            on_send_paused = self._on_send_paused
            ws.on_pause_writing = lambda: on_send_paused(True)
            ws.on_resume_writing = lambda: on_send_paused(False)
        if self._reading_paused:
            ws.pause_reading()
        try:
            self._handle(self._core.connected(conn, self._now()))
            await ws.wait_closed()
        finally:
            ws.on_message = None
            self._sockets.pop(conn, None)
            self._conn_tasks.pop(conn, None)
            if not ws.closed.done():
                ws.close()  # cancelled: aclose() waits for the end
            if ws.writing_paused and self._on_send_paused is not None:
                self._on_send_paused(False)  # nothing is waiting to be sent any more
        self._handle(self._core.connection_closed(conn, ws.close_code, self._now()))

    def _reader(self, conn: int) -> Callable[[str | bytes], None]:
        """The ``on_message`` of ``conn``: each frame to the core, from data_received."""
        core, handle, loop = self._core, self._handle, self._loop
        assert loop is not None

        def on_frame(frame: str | bytes) -> None:
            try:
                handle(core.message(conn, frame, loop.time()))
            except Exception as exc:  # never a silent end: the session must learn of it
                logger.exception("processing a reply failed")
                handle(core.internal_error(conn, type(exc).__name__, loop.time()))
                ws = self._sockets.get(conn)
                if ws is not None:
                    ws.close()
        return on_frame

    async def _open(self) -> transport.ClientConnection:
        url = await self.backend.connect_url()
        headers = self._key.authorization_header() if self._key else None
        try:
            return await transport.connect(
                url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                max_size=2**24,
                compression=self.compression,
                # Pings find a connection that went silent (a stalled network); the
                # core then reconnects.
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = _HANDSHAKE_HINTS.get(status, "check the URL and try again")
            raise HandshakeError(
                f"{self.backend.label} refused the connection (HTTP {status}): {hint}",
                error_code=status) from None
        except InvalidURI:
            raise ConnectError(f"{url!r} is not a valid WebSocket URL") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else self._redact(str(exc))
            raise ConnectError(
                f"cannot connect to {self.backend.label} ({url}): {what}. Check the network "
                "and the URL (SONIOX_WS_URL), then try again.") from None

    # -- resuming container audio ---------------------------------------------------------

    def _start_transcoder(self, action: StartTranscoding) -> None:
        try:
            from .session.transcode import PcmTranscoder
        except ImportError:
            self._handle(self._core.transcoder_finished(
                "resuming compressed audio needs PyAV and NumPy (pip install av numpy)",
                self._now()))
            return
        assert self._loop is not None
        self._transcoder = PcmTranscoder(
            self._loop, action.skip_ms,
            on_pcm=lambda pcm: self._handle(self._core.transcoded(pcm, self._now())),
            on_mark=lambda req: self._handle(self._core.transcoder_mark(req, self._now())),
            on_end=lambda err: self._handle(self._core.transcoder_finished(err, self._now())),
        )
        self._transcoder.feed(action.container)

    def _redact(self, text: str) -> str:
        return self._key.redact(text) if self._key else text
