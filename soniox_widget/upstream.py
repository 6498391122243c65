"""The proxy coroutine: one real-time session with Soniox (or a compatible server).

:class:`UpstreamSession` is the only client of the Soniox wire protocol in this
package; the notebook widget, the standalone proxy and ``transcribe_file`` all
use it. It accepts audio at any time (before the connection is open, too) and
sends it in order; nothing is dropped. Every failure ends up as one
:class:`~soniox_widget.errors.SonioxError`.

Example::

    async with UpstreamSession(SonioxConfig(), api_key="...") as session:
        session.send_audio(chunk)          # any time, queued in order
        session.end()                      # end of stream
        async for reply in session.replies():
            print(reply.tokens)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .auth import APIKey, find_api_key
from .config import SonioxConfig, resolve_ws_url
from .errors import ConfigError, MissingAPIKeyError, SonioxError
from .protocol import (
    DEFAULT_WS_URL,
    KEEPALIVE_MESSAGE,
    ProtocolError,
    Reply,
    finalize_message,
    parse_reply,
)

logger = logging.getLogger(__name__)

#: Audio frames are sent as they come; Soniox accepts frames well above this size,
#: but very large single frames are split so keepalive/finalize are never stuck behind one.
MAX_FRAME_BYTES = 256 * 1024


@dataclass(frozen=True)
class _Finalize:
    trailing_silence_ms: int | None


class _End:
    pass


_END = _End()


def _needs_key(url: str) -> bool:
    """Soniox's own hosts need a key; a local or custom server may not."""
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.endswith("soniox.com") or url == DEFAULT_WS_URL


class UpstreamSession:
    """One start → finished session, owning its socket and its tasks.

    Args:
        config: session options; default :class:`SonioxConfig()`.
        api_key: the key, else ``SONIOX_API_KEY``, else ``.env``. Sent only as an
            ``Authorization: Bearer`` header on the handshake, never in a message.
        url: the WebSocket URL, else ``SONIOX_WS_URL``, else Soniox's.
        connect_timeout: seconds allowed for the TCP + WebSocket handshake.
        finish_timeout: seconds to wait for ``finished`` after the end of stream.
        keepalive_interval: a keepalive is sent when nothing was sent for this long,
            so a paused session is not closed by the server (Soniox wants one < 20 s).
    """

    def __init__(
        self,
        config: SonioxConfig | None = None,
        *,
        api_key: str | APIKey | None = None,
        url: str | None = None,
        connect_timeout: float = 10.0,
        finish_timeout: float = 30.0,
        keepalive_interval: float = 5.0,
    ) -> None:
        if config is not None and not isinstance(config, SonioxConfig):
            raise ConfigError(
                f"config must be a SonioxConfig, got {type(config).__name__}; "
                "build one with SonioxConfig(...) or SonioxConfig.from_options({...})"
            )
        self.config = config or SonioxConfig()
        self.url = resolve_ws_url(url)
        self._key = find_api_key(api_key)
        if self._key is None and _needs_key(self.url):
            raise MissingAPIKeyError()
        self.connect_timeout = connect_timeout
        self.finish_timeout = finish_timeout
        self.keepalive_interval = keepalive_interval

        self._outbox: asyncio.Queue[bytes | _Finalize | _End] = asyncio.Queue()
        self._replies: asyncio.Queue[Reply | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._ended = False
        self._closed = False
        self._error: SonioxError | None = None
        self._finished = False
        self._end_time: float | None = None
        self.bytes_queued = 0
        self.bytes_sent = 0

    def __repr__(self) -> str:
        state = (
            "finished" if self._finished else "failed" if self._error else
            "connected" if self._connected.is_set() else "connecting" if self._task else "new"
        )
        return f"<UpstreamSession {self.url} {state} sent={self.bytes_sent}B>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once (audio may be sent now)."""
        if self._task is not None:
            return
        if self._closed:
            raise SonioxError("this session was closed; start a new one", reason="closed")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"soniox-upstream {self.url}"
        )

    async def __aenter__(self) -> UpstreamSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop at once: cancel the session task and close the socket. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        if not self._finished and self._error is None:
            self._error = SonioxError("the session was closed before it finished",
                                      reason="closed")
        self._replies.put_nowait(None)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def error(self) -> SonioxError | None:
        return self._error

    @property
    def ended(self) -> bool:
        return self._ended

    # -- client → server ------------------------------------------------------------------

    def send_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Queue audio bytes; they are sent in order once connected. Never blocks."""
        self._check_open("send audio")
        chunk = bytes(data)
        if not chunk:
            return  # an empty frame would mean end of stream; that is end()'s job
        self.bytes_queued += len(chunk)
        for i in range(0, len(chunk), MAX_FRAME_BYTES):
            self._outbox.put_nowait(chunk[i : i + MAX_FRAME_BYTES])

    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Ask the server to make everything heard so far final (answered by ``<fin>``)."""
        self._check_open("finalize")
        if trailing_silence_ms is not None and (
            not isinstance(trailing_silence_ms, int) or trailing_silence_ms < 0
        ):
            raise ConfigError("trailing_silence_ms must be a non-negative integer")
        self._outbox.put_nowait(_Finalize(trailing_silence_ms))

    def end(self) -> None:
        """End of stream: the server sends the last tokens, then ``finished``."""
        if self._ended:
            return
        self._check_open("end the stream")
        self._ended = True
        self._outbox.put_nowait(_END)

    def _check_open(self, what: str) -> None:
        if self._ended:
            raise SonioxError(f"cannot {what}: the stream was already ended", reason="closed")
        if self._closed or self._error is not None:
            raise SonioxError(f"cannot {what}: the session is closed", reason="closed")

    # -- server → client ------------------------------------------------------------------

    async def replies(self) -> AsyncIterator[Reply]:
        """Yield replies as they arrive; end after ``finished``; raise :class:`SonioxError`
        if the session failed. Only one consumer may iterate."""
        self.start()
        while True:
            reply = await self._replies.get()
            if reply is None:
                break
            yield reply
        if self._error is not None:
            raise self._error

    async def wait_connected(self) -> None:
        """Wait until the start message was sent (or raise the failure)."""
        self.start()
        task = self._task
        waiter = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self._connected.is_set():
            raise self._error or SonioxError("the session ended before connecting",
                                             reason="closed")

    async def wait_finished(self) -> None:
        """Wait for the session task (call :meth:`end` first); raise its failure."""
        self.start()
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        if self._error is not None:
            raise self._error

    # -- the session task -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            ws = await self._connect()
            self._ws = ws
            await ws.send(json.dumps(self.config.to_start_message()))
            self._connected.set()
            logger.debug("upstream session started at %s", self.url)
            sender = asyncio.get_running_loop().create_task(self._send_loop(ws))
            try:
                await self._receive_loop(ws)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        except SonioxError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # anything unexpected still ends as a SonioxError
            logger.exception("upstream session crashed")
            self._fail(SonioxError(f"upstream session failed: {self._redact(exc)}",
                                   reason="protocol"))
        finally:
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await self._ws.close()
            self._replies.put_nowait(None)

    async def _connect(self) -> ClientConnection:
        headers = self._key.authorization_header() if self._key else None
        try:
            return await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                max_size=2**24,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=5,
                proxy=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = {
                401: "check your SONIOX_API_KEY (it was refused)",
                403: "check your SONIOX_API_KEY and the URL",
                404: "check the URL path (/transcribe-websocket)",
                429: "too many sessions; wait and try again",
            }.get(status, "check the URL and try again")
            raise SonioxError(
                f"the server at {self.url} refused the connection (HTTP {status}): {hint}",
                error_code=status,
                reason="handshake",
            ) from None
        except InvalidURI:
            raise SonioxError(f"{self.url!r} is not a valid WebSocket URL",
                              reason="connect") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else self._redact(exc)
            raise SonioxError(
                f"cannot connect to {self.url}: {what}. Check the network and the URL "
                "(SONIOX_WS_URL), then try again.",
                reason="connect",
            ) from None

    async def _send_loop(self, ws: ClientConnection) -> None:
        try:
            while True:
                try:
                    item = await asyncio.wait_for(self._outbox.get(), self.keepalive_interval)
                except TimeoutError:
                    await ws.send(KEEPALIVE_MESSAGE)
                    continue
                if isinstance(item, bytes):
                    await ws.send(item)
                    self.bytes_sent += len(item)
                elif isinstance(item, _Finalize):
                    await ws.send(finalize_message(item.trailing_silence_ms))
                else:
                    await ws.send(b"")
                    self._end_time = asyncio.get_running_loop().time()
                    return
        except ConnectionClosed:
            return  # the receive loop reports why

    async def _receive_loop(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Until end() the session may idle for as long as the user likes (keepalives
            # flow); after it, 'finished' must come within finish_timeout. Cancelling
            # recv() is safe in websockets: no message is lost, so polling is fine.
            if self._end_time is None:
                timeout = 1.0
            else:
                timeout = max(0.0, self._end_time + self.finish_timeout - loop.time())
            try:
                message = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                # The end of stream may have been sent while this poll waited: only a
                # deadline that has really passed is a timeout.
                if self._end_time is None or (
                        loop.time() < self._end_time + self.finish_timeout):
                    continue
                raise SonioxError(
                    f"no 'finished' reply within {self.finish_timeout:g} s after the end "
                    "of stream; the server may be overloaded. Try again.",
                    reason="timeout",
                ) from None
            except ConnectionClosed as exc:
                raise SonioxError(
                    "the connection was lost before the session finished "
                    f"(close code {exc.rcvd.code if exc.rcvd else 'none'}); start a new "
                    "session to continue",
                    reason="connection_lost",
                ) from None
            try:
                reply = parse_reply(message)
            except ProtocolError as exc:
                raise SonioxError(f"unexpected reply from the server: {exc}",
                                  reason="protocol") from None
            if reply.is_error:
                text = self._redact(reply.error_message or "")
                raise SonioxError(
                    f"Soniox error {reply.error_code}: {text}",
                    error_code=reply.error_code,
                    error_message=text,
                    reason="service",
                )
            self._replies.put_nowait(reply)
            if reply.finished:
                self._finished = True
                return

    def _fail(self, exc: SonioxError) -> None:
        if self._error is None:
            self._error = exc
            logger.info("upstream session failed: %s", exc)

    def _redact(self, value: Any) -> str:
        text = str(value)
        return self._key.redact(text) if self._key else text
