"""The life of one real-time session as a pure state machine (sans I/O).

In the style of the ``websockets`` library's protocol core: :class:`SessionCore`
owns no socket, task or clock. A driver (``upstream.py``) feeds it events — the
user's audio and commands, what the connection did, the time — and carries out
the :data:`Action` values each event returns: open a connection, send a frame,
deliver a reply, close, fail. Every rule of the lifecycle therefore lives here,
in one place, and a unit test can walk through any of them without a socket:

* audio is accepted in any state before the end and never dropped;
* a dropped connection, and the errors Soniox documents as "restart the request"
  (408, 500, 503), reconnect with back-off (bounded tries within a bounded time)
  and resend the audio whose words were not final yet, so the transcript goes on
  with no word lost or repeated and token times stay on the recording's clock;
* errors a retry cannot fix (400, 401, 402, 403, 404, 429) end the session at once;
* while no audio flows (paused, or a slow source) keepalives hold the session open;
* after the end of stream, ``finished`` must come within a deadline;
* after a failure or ``close`` nothing more is sent and no connection is opened.

States::

    new ─start─▶ connecting ─connected─▶ streaming ⇄ paused
                     │                       │  end
                     │ fail                  ▼
                     ▼               finishing ─finished─▶ finished
                   failed ◀─ fatal error / retries used up / deadline
    streaming, paused, finishing ─drop─▶ reconnecting ─connected─▶ (where it was)
"""

from __future__ import annotations

import enum
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..config import SonioxConfig
from ..errors import (
    ConnectionLostError,
    ProtocolViolationError,
    ServiceError,
    SessionClosedError,
    SessionTimeoutError,
    SonioxError,
    is_retryable,
)
from ..protocol import (
    END_TOKEN,
    FIN_TOKEN,
    EndOfStream,
    FinalizeRequest,
    KeepaliveMessage,
    ProtocolError,
    Reply,
    StartMessage,
    Token,
    encode_client_message,
    is_error_data,
    load_reply,
    reply_from_data,
    reply_text,
)
from ..words import space_between
from .ledger import (
    PCM_CHANNELS,
    PCM_FORMAT,
    PCM_RATE,
    ContainerLedger,
    RawLedger,
    raw_frame_bytes,
)

logger = logging.getLogger(__name__)

#: Audio frames larger than this are split, so a control frame never waits long.
MAX_FRAME_BYTES = 256 * 1024


class SessionState(str, enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    PAUSED = "paused"
    RECONNECTING = "reconnecting"
    FINISHING = "finishing"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_over(self) -> bool:
        return self in (SessionState.FINISHED, SessionState.FAILED)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard a session tries to come back after a drop.

    Attempt *n* waits ``base_delay * 2**(n-1)`` (at most ``max_delay``); the session
    fails after ``max_attempts`` failed attempts in a row, when ``window`` seconds
    have passed since the drop without a working connection, or at the
    ``max_reconnects``-th drop of one session (each new connection is a new,
    billed Soniox session: a service that keeps failing must not cause a storm).
    ``max_resend_seconds`` bounds the not-yet-final raw audio kept for resending;
    ``max_container_bytes`` the compressed recording kept to resume it (64 MB: over
    four hours of the browser's audio; past it a drop ends the session).
    A new connection counts as working once it makes a word final or has stayed up
    ``stable_after`` seconds (a paused session makes no words, but holds).
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 4.0
    window: float = 30.0
    max_resend_seconds: float = 60.0
    max_reconnects: int = 10
    stable_after: float = 10.0
    max_container_bytes: int = 64 * 1024 * 1024

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))


NO_RECONNECT = ReconnectPolicy(max_attempts=0)


# -- actions: what the driver must do -------------------------------------------------


@dataclass(frozen=True)
class OpenConnection:
    conn: int


@dataclass(frozen=True)
class SendFrame:
    conn: int
    frame: str | bytes


@dataclass(frozen=True)
class CloseConnection:
    conn: int


@dataclass(frozen=True)
class DeliverReply:
    reply: Reply


@dataclass(frozen=True)
class DeliverText:
    """A reply as JSON text, for a core made with ``deliver_text=True`` (a relay).

    On the first connection it is the server's own frame, unchanged but for the key
    masked; after a reconnect, the reply moved onto the recording's clock.
    """

    text: str


@dataclass(frozen=True)
class StartTranscoding:
    """Decode ``container`` (the stream from its first byte) to 16 kHz s16le mono,
    dropping the first ``skip_ms``; pass the result to :meth:`SessionCore.transcoded`."""

    container: bytes
    skip_ms: int


@dataclass(frozen=True)
class FeedTranscoder:
    data: bytes


@dataclass(frozen=True)
class MarkTranscoder:
    """Give ``request`` back through :meth:`SessionCore.transcoder_mark` once the audio
    fed before it has come out as PCM (so a finalize covers that audio)."""

    request: FinalizeRequest


@dataclass(frozen=True)
class EndTranscoder:
    pass


@dataclass(frozen=True)
class StateChanged:
    state: SessionState


@dataclass(frozen=True)
class SessionOver:
    """The session finished (``error is None``) or failed; nothing more will happen."""

    error: SonioxError | None


Action = (OpenConnection | SendFrame | CloseConnection | DeliverReply | DeliverText
          | StartTranscoding
          | FeedTranscoder | MarkTranscoder | EndTranscoder | StateChanged | SessionOver)

_LIVE = (SessionState.STREAMING, SessionState.PAUSED, SessionState.FINISHING)
_NOT_CONNECTED = (SessionState.NEW, SessionState.CONNECTING, SessionState.RECONNECTING)


def _ms_field(data: dict, name: str, what: str) -> int | None:
    """A time field of a reply or token read as whole milliseconds (None if absent)."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Name the field, never the value: a hostile server could put the key there.
        raise ProtocolError(f"{what} {name!r} is not a number")
    try:
        return int(value)
    except (OverflowError, ValueError):
        raise ProtocolError(f"{what} {name!r} is out of range") from None


def _shift(tok: Token, offset: int) -> Token:
    if offset == 0 or (tok.start_ms is None and tok.end_ms is None):
        return tok
    return replace(tok,
                   start_ms=None if tok.start_ms is None else tok.start_ms + offset,
                   end_ms=None if tok.end_ms is None else tok.end_ms + offset)


class SessionCore:
    """One session's lifecycle; see the module docstring.

    Args:
        config: the session's options (the first connection's start message).
        keepalive_interval: send a keepalive when nothing was sent for this long.
        finish_timeout: seconds allowed between the end of stream and ``finished``.
        reconnect: the reconnect policy (:data:`NO_RECONNECT` turns it off).
        redact: applied to every text that came from the server before it is put
            into an error or relayed (a hostile server may echo the key).
        where: how errors name the service ("Soniox", "server at host:port").
        deliver_text: deliver replies as JSON text (:class:`DeliverText`) instead of
            :class:`Reply` objects. For a relay: while the server's frames need no
            change (the first connection), each is passed on as it came, and only
            what the session acts on is read from it (error, finished, how far words
            are final, ``<fin>``), not every token; the frame is not re-encoded.
    """

    def __init__(
        self,
        config: SonioxConfig,
        *,
        keepalive_interval: float = 5.0,
        finish_timeout: float = 30.0,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        redact: Callable[[str], str] = str,
        where: str = "the speech service",
        deliver_text: bool = False,
    ) -> None:
        self.config = config
        self.deliver_text = deliver_text
        self.keepalive_interval = keepalive_interval
        self.finish_timeout = finish_timeout
        self.policy = reconnect
        self._redact = redact
        self.where = where

        self.state = SessionState.NEW
        self.error: SonioxError | None = None
        self.connections = 0          # connections opened (1 + reconnects)
        self.reconnects = 0           # successful reconnects
        self.bytes_in = 0             # audio bytes the user gave
        self.bytes_sent = 0           # audio bytes written to connections (incl. resent)

        # Id of the current connection, or of the next one while reconnecting; events
        # of any other (older) connection are ignored.
        self._conn = 0
        self._conn_open = False       # the current connection has sent its start message
        self._return_to = SessionState.STREAMING  # where a (re)connect lands
        self._upstream_config = config
        # Audio (upstream format) and finalize requests not yet sent, in order.
        self._pending: deque[bytes | FinalizeRequest] = deque()
        self._fin_outstanding: deque[FinalizeRequest] = deque()
        self._end_requested = False
        self._end_sent_at: float | None = None
        self._last_sent = 0.0
        # Reconnecting
        self._attempts = 0            # failed attempts since the last working connection
        self._tried = 0               # reconnects opened since then (for the message)
        self._proven = True           # the current connection works (words or time)
        self._connected_at = 0.0
        self._last_error: SonioxError | None = None
        self._drop_at: float | None = None
        self._retry_at: float | None = None
        self._last_problem = ""
        # The recording's clock
        self._offset_ms = 0           # recording time of this connection's t=0
        self._last_char = ""          # of the final text so far (joining across connections)
        self._join_pending = False    # the resumed connection has given no final word yet
        self._final_ms = 0            # everything before this is final (recording time)
        self._heard_ms = 0            # total audio the server had processed
        # What may be resent
        self._transcoding = False     # container audio → PCM after a drop
        self._transcoder_done = False
        self._transcoder_input_closed = False
        self._raw: RawLedger | None = None
        self._container: ContainerLedger | None = None
        max_ms = int(reconnect.max_resend_seconds * 1000)
        if config.is_raw_audio:
            frame = raw_frame_bytes(config.audio_format, config.num_channels or 1)
            self._raw = RawLedger(config.sample_rate or PCM_RATE, frame, max_ms)
        elif reconnect.max_attempts > 0:
            self._container = ContainerLedger(reconnect.max_container_bytes)
        self._max_resend_ms = max_ms

    def __repr__(self) -> str:
        return f"<SessionCore {self.state.value} conn={self._conn} in={self.bytes_in}B>"

    # -- queries -----------------------------------------------------------------------

    @property
    def upstream_config(self) -> SonioxConfig:
        """The start message of the current connection (PCM after a container drop)."""
        return self._upstream_config

    @property
    def current_connection(self) -> int:
        return self._conn

    @property
    def ended(self) -> bool:
        return self._end_requested

    @property
    def takes_audio(self) -> bool:
        """Whether audio given now goes out at once (a connection is open and live).

        A producer that can wait waits while this is False, instead of piling audio up
        while the service is away: what is not final yet is resent after a reconnect
        only back to ``max_resend_seconds``, and older audio is let go. An over session
        takes nothing, and is not waited for (its caller learns why from it).
        """
        return self.state.is_over or (self._conn_open and self.state in _LIVE)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do (None: nothing timed)."""
        if self.state.is_over:
            return None
        times = []
        if self.state == SessionState.RECONNECTING:
            if self._retry_at is not None:
                times.append(self._retry_at)
            if self._drop_at is not None:
                times.append(self._drop_at + self.policy.window)
        if self._conn_open and self._end_sent_at is None and self.state in _LIVE:
            times.append(self._last_sent + self.keepalive_interval)
        if self._end_sent_at is not None:
            times.append(self._end_sent_at + self.finish_timeout)
        return min(times) if times else None

    # -- user events ---------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self.state != SessionState.NEW:
            return []
        self.connections += 1
        self._conn += 1
        return [*self._set_state(SessionState.CONNECTING), OpenConnection(self._conn)]

    def audio(self, data: bytes, now: float) -> list[Action]:
        """Audio in the user's format. Raises :class:`SonioxError` after end or failure."""
        self._check_accepting("send audio")
        if not data:
            return []
        self.bytes_in += len(data)
        if self._transcoding:
            return [FeedTranscoder(bytes(data))]
        if self._container is not None:
            self._container.append(data)
        return self._upstream_audio(bytes(data), now)

    def transcoded(self, pcm: bytes, now: float) -> list[Action]:
        """PCM from the transcoder (the driver's answer to :class:`StartTranscoding`)."""
        if self.state.is_over or not pcm:
            return []
        return self._upstream_audio(pcm, now)

    def transcoder_finished(self, error: str | None, now: float) -> list[Action]:
        if self.state.is_over:
            return []
        if error is not None:
            last = self._last_error
            return self._fail(ProtocolViolationError(
                f"{self._last_problem}, and the session could not be resumed because the "
                f"audio could not be decoded in the kernel: {error}",
                error_code=last.error_code if last else None))
        self._transcoder_done = True
        return self._flush_controls(now)

    def finalize(self, trailing_silence_ms: int | None, now: float) -> list[Action]:
        self._check_accepting("finalize")
        request = FinalizeRequest(trailing_silence_ms)
        if self._transcoding and not self._transcoder_input_closed:
            return [MarkTranscoder(request)]  # behind the audio still being decoded
        return self._queue_finalize(request, now)

    def transcoder_mark(self, request: FinalizeRequest, now: float) -> list[Action]:
        """A finalize comes out of the transcoder, after the audio given before it."""
        if self.state.is_over:
            return []
        return self._queue_finalize(request, now)

    def _queue_finalize(self, request: FinalizeRequest, now: float) -> list[Action]:
        if self._pending:
            self._pending.append(request)
            return []
        if self._conn_open and self.state in _LIVE:
            self._fin_outstanding.append(request)
            return [self._send(request, now)]
        self._pending.append(request)
        return []

    def pause(self, now: float) -> list[Action]:
        """The source stopped on purpose; keepalives hold the session open."""
        if self.state == SessionState.STREAMING:
            return self._set_state(SessionState.PAUSED)
        if self.state in _NOT_CONNECTED:
            self._return_to = SessionState.PAUSED
        return []

    def resume(self, now: float) -> list[Action]:
        if self.state == SessionState.PAUSED:
            return self._set_state(SessionState.STREAMING)
        if self.state in _NOT_CONNECTED \
                and self._return_to == SessionState.PAUSED:
            self._return_to = SessionState.STREAMING
        return []

    def end(self, now: float) -> list[Action]:
        """End of stream: the last words become final, then ``finished``."""
        if self._end_requested or self.state.is_over:
            return []
        self._end_requested = True
        actions: list[Action] = self._end_transcoder()
        if self.state in _NOT_CONNECTED:
            self._return_to = SessionState.FINISHING
        else:
            actions += self._set_state(SessionState.FINISHING)
        return actions + self._flush_controls(now)

    def close(self, now: float) -> list[Action]:
        """The user gave up on the session: stop everything now."""
        if self.state.is_over:
            return []
        return self._fail(SessionClosedError("the session was closed before it finished"))

    # -- connection events ---------------------------------------------------------------

    def connected(self, conn: int, now: float) -> list[Action]:
        """The handshake of ``conn`` succeeded: send the start message and what waits."""
        if conn != self._conn or self.state.is_over:
            return [CloseConnection(conn)]
        self._conn_open = True
        actions: list[Action] = [self._send(StartMessage(self._upstream_config.to_start_message()),
                                           now)]
        if self.state == SessionState.RECONNECTING:
            self.reconnects += 1
            self._proven = False
            logger.info("reconnected to %s (attempt %d); resending from %d ms",
                        self.where, self._attempts + 1, self._offset_ms)
        self._connected_at = now
        self._retry_at = None  # the window still counts from the drop until it works
        target = self._return_to if not self._end_requested else SessionState.FINISHING
        actions += self._set_state(target)
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, FinalizeRequest):
                self._fin_outstanding.append(item)
                actions.append(self._send(item, now))
            else:
                actions += self._send_audio_frames(item, now)
        return actions + self._flush_controls(now)

    def connect_failed(self, conn: int, error: SonioxError, now: float) -> list[Action]:
        if conn != self._conn or self.state.is_over:
            return []
        if self.state == SessionState.RECONNECTING and is_retryable(error):
            self._last_problem = str(error)
            self._last_error = error
            return self._schedule_retry(now)
        return self._fail(error)

    def message(self, conn: int, frame: str | bytes, now: float) -> list[Action]:
        """A frame from the server on ``conn``."""
        if conn != self._conn or self.state.is_over:
            return []
        as_sent = self.deliver_text and not (self._offset_ms or self._join_pending)
        if as_sent:
            text = reply_text(frame)
            if (text[:1] == "{" and "true" not in text and '"error_' not in text
                    and "\\" not in text):
                # What the session acts on is a final token (progress, <fin>), an error
                # or finished: the first and last need a JSON true, an error its key.
                # Without them (only non-final words: most replies) there is nothing to
                # read. A word such as "true" in the text only costs a full read; a key
                # spelled with \u escapes would go unnoticed, which hurts only the
                # sending server's own session (its resume point). A text with a
                # backslash is read: an escape could hide a key from the masking.
                return [DeliverText(self._redact(text))]
        try:
            data = load_reply(frame)
            if as_sent and not is_error_data(data):
                return self._accept_as_sent(data, frame, now)
            reply = reply_from_data(data)
        except ProtocolError as exc:
            return self._fail(ProtocolViolationError(
                f"unexpected reply from {self.where}: {self._redact(str(exc))}"))
        if reply.is_error:
            text = self._redact(reply.error_message or "")
            code = "" if reply.error_code is None else f" {reply.error_code}"
            err = ServiceError(f"error{code} from {self.where}: {text}",
                               error_code=reply.error_code, error_message=text)
            self._last_error = err
            if is_retryable(err) and self._can_resume():
                return self._drop(f"{self.where} asked to restart the session "
                                  f"({reply.error_code})", now)
            return self._fail(err)
        actions = self._accept(reply, now)
        if self.deliver_text:
            return [DeliverText(self._redact(a.reply.dumps())) if isinstance(a, DeliverReply)
                    else a for a in actions]
        return actions

    def internal_error(self, conn: int, what: str, now: float) -> list[Action]:
        """The driver could not process what ``conn`` sent: end the session clearly."""
        if conn != self._conn or self.state.is_over:
            return []
        return self._fail(ProtocolViolationError(
            f"could not process a reply from {self.where} ({what})"))

    def connection_closed(self, conn: int, code: int | None, now: float) -> list[Action]:
        """``conn`` is gone (after an error reply, a network failure or a close)."""
        if conn != self._conn or self.state.is_over:
            return []
        self._conn_open = False
        if self.state in _NOT_CONNECTED:
            # Closed during the handshake, before any reply: count it as a failed try.
            err = ConnectionLostError(f"the connection to {self.where} closed during the "
                                      f"handshake (close code {code})")
            if self.state == SessionState.RECONNECTING:
                self._last_problem = str(err)
                return self._schedule_retry(now)
            return self._fail(err)
        why = f"the connection to {self.where} was lost (close code {code or 'none'})"
        if self._can_resume():
            return self._drop(why, now)
        return self._fail(ConnectionLostError(
            f"{why} before the session finished; start a new recording to continue"))

    def tick(self, now: float) -> list[Action]:
        """Time passed: keepalives, retries and deadlines."""
        if self.state.is_over:
            return []
        if self._end_sent_at is not None and now >= self._end_sent_at + self.finish_timeout:
            return self._fail(SessionTimeoutError(
                f"no 'finished' reply within {self.finish_timeout:g} s after the end of "
                f"stream; {self.where} may be overloaded. Try again."))
        if self.state == SessionState.RECONNECTING:
            if self._drop_at is not None and now >= self._drop_at + self.policy.window:
                return self._give_up()
            if self._retry_at is not None and now >= self._retry_at:
                self._retry_at = None
                self.connections += 1
                self._tried += 1
                return [OpenConnection(self._conn)]
            return []
        if (self._conn_open and self._end_sent_at is None and self.state in _LIVE
                and now >= self._last_sent + self.keepalive_interval):
            return [self._send(KeepaliveMessage(), now)]
        return []

    # -- internals -----------------------------------------------------------------------

    def _check_accepting(self, what: str) -> None:
        if self.state.is_over:
            raise SessionClosedError(f"cannot {what}: the session is over"
                                     + (f" ({self.error})" if self.error else ""))
        if self._end_requested:
            raise SessionClosedError(f"cannot {what}: the stream was already ended")

    def _set_state(self, state: SessionState) -> list[Action]:
        if state == self.state:
            return []
        logger.debug("session %s → %s", self.state.value, state.value)
        self.state = state
        return [StateChanged(state)]

    def _send(self, message: object, now: float) -> SendFrame:
        self._last_sent = now
        return SendFrame(self._conn, encode_client_message(message))  # type: ignore[arg-type]

    def _send_audio_frames(self, data: bytes, now: float) -> list[Action]:
        # The audio frame is the bytes themselves (encode_client_message of an
        # AudioFrame): built directly, since this runs for every chunk.
        self._last_sent = now
        conn = self._conn
        if len(data) <= MAX_FRAME_BYTES:
            self.bytes_sent += len(data)
            return [SendFrame(conn, data)]
        out: list[Action] = []
        for i in range(0, len(data), MAX_FRAME_BYTES):
            piece = data[i : i + MAX_FRAME_BYTES]
            self.bytes_sent += len(piece)
            out.append(SendFrame(conn, piece))
        return out

    def _upstream_audio(self, data: bytes, now: float) -> list[Action]:
        if self._raw is not None:
            self._raw.append(data)
        if self._conn_open and self.state in _LIVE:
            return self._send_audio_frames(data, now)
        self._pending.append(data)
        return []

    def _flush_controls(self, now: float) -> list[Action]:
        """Send the end of stream once everything before it is out."""
        if not (self._conn_open and self.state in _LIVE) or self._pending:
            return []
        out: list[Action] = []
        if (self._end_requested and self._end_sent_at is None
                and (not self._transcoding or self._transcoder_done)):
            out.append(self._send(EndOfStream(), now))
            self._end_sent_at = now
        return out

    def _accept(self, reply: Reply, now: float) -> list[Action]:
        offset = self._offset_ms
        before = self._final_ms
        tokens = []
        first_word = True
        for tok in reply.tokens:
            tok = _shift(tok, offset)
            if self._join_pending and first_word and not tok.is_special:
                first_word = False
                tok = self._join(tok)
            if tok.is_final and tok.text == FIN_TOKEN and self._fin_outstanding:
                self._fin_outstanding.popleft()
            if (tok.is_final and not tok.is_special and offset and tok.end_ms is not None
                    and tok.end_ms <= offset):
                continue  # wholly before the resend point: it was final once already
            tokens.append(tok)
            if tok.is_final and not tok.is_special and tok.text:
                self._last_char = tok.text[-1]
                self._join_pending = False
            if tok.is_final and tok.end_ms is not None:
                self._final_ms = max(self._final_ms, tok.end_ms)
        final_ms = reply.final_audio_proc_ms
        total_ms = reply.total_audio_proc_ms
        if final_ms is not None:
            final_ms += offset
        if total_ms is not None:
            total_ms += offset
        shifted = Reply(tuple(tokens), final_ms, total_ms, reply.finished, extra=reply.extra)
        return self._progress(DeliverReply(shifted), before, final_ms, total_ms,
                              reply.finished)

    def _accept_as_sent(self, data: dict, frame: str | bytes, now: float) -> list[Action]:
        """:meth:`_accept` for a reply that needs no change (no offset, no join pending):
        read only what the session acts on, and deliver the server's own text.

        What it reads it checks (a final token's text and ``end_ms``, the progress
        fields); the rest goes on unread, as a relay passes it. Raises ProtocolError.
        """
        tokens = data.get("tokens", [])
        if not isinstance(tokens, list):
            raise ProtocolError("reply 'tokens' is not a list")
        before = self._final_ms
        final_ms = self._final_ms
        for tok in tokens:
            if not isinstance(tok, dict):
                raise ProtocolError("a token must be a JSON object")
            if not tok.get("is_final"):
                continue
            text = tok.get("text")
            if not isinstance(text, str):
                raise ProtocolError("a token has no 'text' string")
            if text == FIN_TOKEN:
                if self._fin_outstanding:
                    self._fin_outstanding.popleft()
            elif text and text != END_TOKEN:
                self._last_char = text[-1]
            end_ms = _ms_field(tok, "end_ms", "token field")
            if end_ms is not None and end_ms > final_ms:
                final_ms = end_ms
        self._final_ms = final_ms
        finished = bool(data.get("finished", False))
        text = reply_text(frame)
        if "\\" in text:
            # JSON escapes ("\u0073k-...") could spell a key that masking the text as it
            # came would miss: the browser gets the reply re-encoded without them.
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        text = self._redact(text)
        return self._progress(DeliverText(text), before,
                              _ms_field(data, "final_audio_proc_ms", "reply field"),
                              _ms_field(data, "total_audio_proc_ms", "reply field"), finished)

    def _progress(self, deliver: Action, before: int, final_ms: int | None,
                  total_ms: int | None, finished: bool) -> list[Action]:
        """What every accepted reply does once its tokens are read: note how far the
        audio is final and heard (times already on the recording's clock), and end the
        session after ``finished``."""
        if final_ms is not None:
            self._final_ms = max(self._final_ms, final_ms)
        if total_ms is not None:
            self._heard_ms = max(self._heard_ms, total_ms)
        progressed = self._final_ms > before or finished
        if self._raw is not None:
            self._raw.trim_to(self._final_ms)
        if not self._proven and progressed:
            self._prove()
        actions: list[Action] = [deliver]
        if finished:
            self._conn_open = False
            self._container = None
            actions += self._set_state(SessionState.FINISHED)
            actions += [CloseConnection(self._conn), SessionOver(None)]
        return actions

    def _end_transcoder(self) -> list[Action]:
        if not self._transcoding or self._transcoder_input_closed:
            return []
        self._transcoder_input_closed = True
        return [EndTranscoder()]

    def _prove(self) -> None:
        """The new connection works: a later drop starts afresh."""
        self._proven = True
        self._attempts = self._tried = 0
        self._drop_at = None
        self._last_error = None

    def _join(self, tok: Token) -> Token:
        """A new connection's first word has no leading space (it starts a session);
        after a resume it continues the text, so give it one where words are spaced."""
        if space_between(self._last_char, tok.text):
            return replace(tok, text=" " + tok.text)
        return tok

    def _can_resume(self) -> bool:
        if self.policy.max_attempts <= 0 or self.reconnects >= self.policy.max_reconnects:
            return False
        if self._raw is not None or self._transcoding:
            return True
        return self._container is not None and self._container.complete

    def _drop(self, why: str, now: float) -> list[Action]:
        """The connection is lost but the session goes on: plan the resend, then retry."""
        logger.info("%s; reconnecting", why)
        self._last_problem = why
        old = self._conn
        self._conn_open = False
        if self.state != SessionState.RECONNECTING:
            self._return_to = SessionState.FINISHING if self._end_requested else (
                self.state if self.state in (SessionState.STREAMING, SessionState.PAUSED)
                else SessionState.STREAMING)
        if not self._proven and now - self._connected_at >= self.policy.stable_after:
            self._prove()
        if self._proven:
            self._drop_at, self._attempts = now, 0
        else:
            # It came back but dropped again before any word: that try failed, and the
            # window still counts from the first drop (no endless reconnect loop).
            self._attempts += 1
        self._end_sent_at = None
        # Finalize requests not yet answered are asked again after the resend.
        requests = [*self._fin_outstanding,
                    *(i for i in self._pending if isinstance(i, FinalizeRequest))]
        self._fin_outstanding.clear()
        actions: list[Action] = [CloseConnection(old)]
        self._join_pending = True
        self._conn += 1  # what the old connection still reports is stale from now on
        resume_ms = self._final_ms
        self._pending.clear()
        if self._raw is not None:
            start_ms, data = self._raw.since(resume_ms)
            if start_ms > resume_ms:
                logger.warning("resending from %d ms, not %d ms: older audio was let go",
                               start_ms, resume_ms)
            self._offset_ms = start_ms
            if data:
                self._pending.append(data)
            self._pending.extend(requests)
        else:
            assert self._container is not None
            # Container audio cannot be cut at a time: decode it to PCM from here on.
            self._transcoding = True
            self._transcoder_done = False
            self._offset_ms = resume_ms
            self._raw = RawLedger(PCM_RATE, raw_frame_bytes(PCM_FORMAT, PCM_CHANNELS),
                                  self._max_resend_ms, base_frames=resume_ms * PCM_RATE // 1000)
            self._upstream_config = self.config.replace(
                audio_format=PCM_FORMAT, sample_rate=PCM_RATE, num_channels=PCM_CHANNELS)
            actions.append(StartTranscoding(self._container.all(), resume_ms))
            self._container = None
            # Unanswered finalizes go through the transcoder, behind the audio they cover.
            actions += [MarkTranscoder(r) for r in requests]
            if self._end_requested:
                actions += self._end_transcoder()
        actions += self._set_state(SessionState.RECONNECTING)
        return actions + self._plan_retry(now)

    def _schedule_retry(self, now: float) -> list[Action]:
        """A reconnect attempt failed: try again later, or give up."""
        self._attempts += 1
        self._conn += 1
        return self._plan_retry(now)

    def _plan_retry(self, now: float) -> list[Action]:
        if self._attempts >= self.policy.max_attempts or (
                self._drop_at is not None and now >= self._drop_at + self.policy.window):
            return self._give_up()
        self._retry_at = now + self.policy.delay(self._attempts + 1)
        return []

    def _give_up(self) -> list[Action]:
        last = self._last_error
        return self._fail(ConnectionLostError(
            f"lost the connection to {self.where} and could not reconnect "
            f"({self._tried} attempt{'s' if self._tried != 1 else ''}): "
            f"{self._last_problem}. Start a new recording to continue.",
            error_code=last.error_code if last else None,
            error_message=last.error_message if last else None))

    def _fail(self, error: SonioxError) -> list[Action]:
        if self.state.is_over:
            return []
        self.error = error
        logger.info("session failed: %s", error)
        actions: list[Action] = []
        if self._conn:
            actions.append(CloseConnection(self._conn))
        self._conn_open = False
        self._pending.clear()
        self._container = None
        self._raw = None
        actions += self._end_transcoder()
        actions += self._set_state(SessionState.FAILED)
        return [*actions, SessionOver(error)]
