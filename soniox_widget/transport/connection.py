"""One WebSocket connection: websockets' sans-I/O ``Protocol`` driven by asyncio callbacks.

websockets' asyncio layer gives every connection a receive queue, a task switch per
message each way and an async context per send; for a relay that only moves frames
from one socket to another, that was about half of the proxy's CPU. Here the
``asyncio.Protocol`` callbacks feed the sans-I/O state machine directly:

* a message is handed to ``on_message`` from ``data_received`` (no queue, no task);
* sending is synchronous: ``protocol.send_*`` and the bytes it produces go straight
  to the transport;
* flow control is asyncio's own: ``on_pause_writing``/``on_resume_writing`` tell the
  owner when this peer reads too slowly, so a relay can ``pause_reading()`` the
  other side, and :meth:`wait_writable` lets a coroutine wait for room;
* timers exist only for what is rare: the opening handshake, a keepalive ping and
  its pong, and the closing handshake. None is touched per message.

What the sans-I/O core does itself: pongs to pings, the close frame echoed,
``max_size`` (a close with 1009), permessage-deflate once negotiated. What it
leaves to this layer, and this layer does: reassembling fragmented messages,
checking text is UTF-8 (1007), pings and their timeout, closing the TCP
connection when the closing handshake stalls.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import CLOSED, CONNECTING, OPEN, Protocol

logger = logging.getLogger(__name__)

Message = str | bytes
#: Write buffer above which the transport asks to pause writing (asyncio's default).
WRITE_LIMIT = 64 * 1024

_TEXT, _BINARY, _CONT, _PONG, _CLOSE = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT,
                                        Opcode.PONG, Opcode.CLOSE)


class ConnectionClosedError(ConnectionError):
    """A send on a connection that is no longer open."""


class Connection(asyncio.Protocol):
    """Base of both sides; subclasses handle the opening handshake's event.

    Callbacks the owner sets (all run on the event loop, none may block):

    * ``on_message(message)``: a whole message, ``str`` for text, ``bytes`` for
      binary. Messages that arrive before it is set are kept and handed over when it is.
    * ``on_pause_writing()`` / ``on_resume_writing()``: this peer's write buffer went
      over / back under the limit.
    * ``on_close()``: the TCP connection is gone (once, after the handshake or not).

    Args:
        protocol: a fresh ``ServerProtocol`` or ``ClientProtocol``.
        ping_interval: seconds between keepalive pings once open; None: no pings.
        ping_timeout: seconds a ping may wait for its pong before the connection is
            dropped (close code 1011, then the TCP connection is aborted).
        close_timeout: seconds the closing handshake may take before the TCP
            connection is aborted.
        open_timeout: seconds the opening handshake may take.
    """

    def __init__(self, protocol: Protocol, *, ping_interval: float | None = None,
                 ping_timeout: float | None = None, close_timeout: float = 10.0,
                 open_timeout: float | None = 10.0) -> None:
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.open_timeout = open_timeout
        self.on_pause_writing: Callable[[], None] | None = None
        self.on_resume_writing: Callable[[], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self._on_message: Callable[[Message], None] | None = None
        self._early: list[Message] = []
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._writing_paused = False
        self._reading_paused = False
        self._write_waiters: list[asyncio.Future[None]] = []
        self._lost: asyncio.Future[None] = self.loop.create_future()
        self._opened: asyncio.Future[None] = self.loop.create_future()
        self._open_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.failure: BaseException | None = None  # why the connection was dropped

    # -- state --------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.protocol.state is OPEN

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (1006: no close frame)."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        return self.protocol.close_reason

    @property
    def writing_paused(self) -> bool:
        return self._writing_paused

    @property
    def on_message(self) -> Callable[[Message], None] | None:
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Message], None] | None) -> None:
        self._on_message = callback
        if callback is not None and self._early:
            early, self._early = self._early, []
            for message in early:
                callback(message)

    # -- sending (synchronous) ------------------------------------------------------------

    def send_text(self, data: str | bytes) -> None:
        """Send a text message (``bytes`` must be UTF-8 already: no re-encoding)."""
        if self.protocol.state is not OPEN:
            raise ConnectionClosedError("the WebSocket connection is not open")
        self.protocol.send_text(data.encode() if type(data) is str else data)
        self._flush()

    def send_binary(self, data: bytes | bytearray | memoryview) -> None:
        if self.protocol.state is not OPEN:
            raise ConnectionClosedError("the WebSocket connection is not open")
        self.protocol.send_binary(data)
        self._flush()

    def send(self, message: Message) -> None:
        """Text for ``str``, binary for bytes."""
        if type(message) is str:
            self.send_text(message)
        else:
            self.send_binary(message)  # type: ignore[arg-type]

    async def wait_writable(self) -> None:
        """Return when the write buffer is under its limit (at once if it is), or the
        connection is gone."""
        if not self._writing_paused or self._lost.done():
            return
        waiter = self.loop.create_future()
        self._write_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._write_waiters:
                self._write_waiters.remove(waiter)

    def pause_reading(self) -> None:
        """Stop reading this peer (flow control for a relay). A pong cannot arrive
        meanwhile, so the ping timeout waits too: a paused peer is not dropped for
        a silence this side chose."""
        self._reading_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (idempotent); the TCP connection is aborted if it
        takes longer than ``close_timeout``. Await :meth:`wait_closed` for the end."""
        state = self.protocol.state
        if self._reading_paused:
            self.resume_reading()  # the peer's close frame must be read
        if state is OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        elif state is CONNECTING or state is CLOSED:
            self.abort()
        else:  # CLOSING: the handshake is under way
            self._arm_close_timer()

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self.transport is not None:
            self.transport.abort()

    def fail(self, code: int, reason: str) -> None:
        """Close with an error code (e.g. a keepalive timeout), aborting after the close
        timeout at most."""
        if self.protocol.state is OPEN:
            self.protocol.fail(code, reason)
            self._flush()
        else:
            self.abort()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        await asyncio.shield(self._lost)

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done when the TCP connection is gone (for ``asyncio.wait``)."""
        return self._lost

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(WRITE_LIMIT)  # type: ignore[union-attr]
        if self.open_timeout is not None:
            self._open_timer = self.loop.call_later(self.open_timeout, self._open_timed_out)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if event.fin and (opcode is _BINARY or opcode is _TEXT):
                    self._deliver(opcode is _TEXT, event.data)
                else:
                    self._other_frame(event)
            else:
                self._handshake_event(event)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        for event in self.protocol.events_received():  # a response ended by EOF
            if type(event) is not Frame:
                self._handshake_event(event)
        self._flush()
        return None  # close the transport: WebSocket never writes after the peer's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state becomes CLOSED
        self.protocol.events_received()
        self._cancel_timers()
        if exc is not None and self.failure is None:
            self.failure = exc
        if not self._opened.done():
            self._opened.set_exception(self._handshake_failure(exc))
            self._opened.exception()  # retrieved: nobody may be waiting
        self._lost.set_result(None)
        self._release_write_waiters()
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:
                logger.exception("on_close callback failed")

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.on_pause_writing is not None:
            self.on_pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._release_write_waiters()
        if self.on_resume_writing is not None:
            self.on_resume_writing()

    # -- for subclasses ----------------------------------------------------------------------

    def _handshake_event(self, event: Any) -> None:
        raise NotImplementedError

    def _handshake_failure(self, exc: Exception | None) -> BaseException:
        return ConnectionClosedError("the connection closed during the opening handshake")

    def _opened_now(self) -> None:
        """The handshake succeeded: start keepalive pings."""
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        if not self._opened.done():
            self._opened.set_result(None)
        self._schedule_ping()

    def _open_timed_out(self) -> None:
        self._open_timer = None
        if self.protocol.state is CONNECTING:
            self.failure = TimeoutError("timed out during the opening handshake")
            self.abort()

    # -- internals -----------------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        protocol = self.protocol
        for data in protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()
                except Exception:  # uvloop may raise RuntimeError on a closing socket
                    transport.close()
            else:  # TLS: no half-close
                transport.close()
        # While open (every message), no closing can be expected: skip the look.
        if (protocol.state is not OPEN and self._close_timer is None
                and protocol.close_expected()):
            self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and not self._lost.done():
            self._close_timer = self.loop.call_later(self.close_timeout, self.abort)

    def _deliver(self, text: bool, data: bytes | bytearray | memoryview) -> None:
        if text:
            try:
                message: Message = data.decode() if type(data) is bytes else bytes(data).decode()
            except UnicodeDecodeError as exc:
                self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = data if type(data) is bytes else bytes(data)
        callback = self._on_message
        if callback is None:
            self._early.append(message)
            return
        try:
            callback(message)
        except Exception:
            logger.exception("on_message callback failed; closing the connection")
            self.fail(CloseCode.INTERNAL_ERROR, "internal error")

    def _other_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:  # the first fragment
            self._fragments = [bytes(frame.data)]
            self._fragments_text = opcode is _TEXT
        elif opcode is _CONT:
            if self._fragments is None:
                return  # the protocol already failed the connection
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._deliver(self._fragments_text, data)
        elif opcode is _PONG:
            if self._ping_payload is not None and bytes(frame.data) == self._ping_payload:
                self._ping_payload = None
                if self._pong_timer is not None:
                    self._pong_timer.cancel()
                    self._pong_timer = None
                self._schedule_ping()
        # PING (answered by the protocol) and CLOSE (echoed by it) need nothing here.

    def _schedule_ping(self) -> None:
        if self.ping_interval is not None and self.protocol.state is OPEN:
            self._ping_timer = self.loop.call_later(self.ping_interval, self._send_ping)

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not OPEN:
            return
        self._ping_payload = os.urandom(4)
        self.protocol.send_ping(self._ping_payload)
        self._flush()
        if self.ping_timeout is not None:
            self._pong_timer = self.loop.call_later(self.ping_timeout, self._pong_missing)

    def _pong_missing(self) -> None:
        self._pong_timer = None
        if self._reading_paused:  # the pong may be waiting unread: look again later
            self._pong_timer = self.loop.call_later(self.ping_timeout or 0.0,
                                                    self._pong_missing)
            return
        self.failure = TimeoutError("keepalive ping timeout")
        logger.info("no pong within %s s: dropping the connection", self.ping_timeout)
        self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        # A peer that went silent will not answer the close frame either.
        self.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._open_timer, self._ping_timer, self._pong_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._open_timer = self._ping_timer = self._pong_timer = self._close_timer = None

    def _release_write_waiters(self) -> None:
        for waiter in self._write_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._write_waiters.clear()
