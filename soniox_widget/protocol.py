"""The Soniox real-time wire format, as plain data: no sockets, no asyncio.

Both sides of the protocol use this module: ``upstream.py`` (the client) parses
replies with :func:`parse_reply`, and ``local/`` (the server) builds them with
:meth:`Reply.to_json`. Keeping one definition means the local engine cannot drift
from what the client understands.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WS_URL = "wss://stt-rt.soniox.com/transcribe-websocket"
WS_PATH = "/transcribe-websocket"

END_TOKEN = "<end>"
"""Endpoint detected: the speaker finished an utterance."""
FIN_TOKEN = "<fin>"
"""The server's answer to a ``finalize`` request."""
SPECIAL_TOKENS = frozenset({END_TOKEN, FIN_TOKEN})

# What each error code means for a session, and which are retried: one table,
# ``errors.ERROR_CODES``, read by ``errors.is_retryable``.


class ProtocolError(ValueError):
    """A message that does not follow the Soniox protocol."""


@dataclass(frozen=True)
class Token:
    """One recognised piece of text; ``text`` carries its own leading space."""

    text: str
    is_final: bool
    start_ms: int | None = None
    end_ms: int | None = None
    confidence: float | None = None
    speaker: str | None = None
    language: str | None = None
    translation_status: str | None = None
    source_language: str | None = None

    @property
    def is_special(self) -> bool:
        """``<end>`` and ``<fin>`` mark events, never words."""
        return self.text in SPECIAL_TOKENS

    def to_json(self) -> dict[str, Any]:
        """The token as Soniox sends it (absent fields left out)."""
        out: dict[str, Any] = {"text": self.text}
        for name in ("start_ms", "end_ms", "confidence"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["is_final"] = self.is_final
        for name in ("speaker", "language", "translation_status", "source_language"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> Token:
        if not isinstance(data, dict):
            raise ProtocolError(f"a token must be a JSON object, got {type(data).__name__}")
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("a token has no 'text' string")

        def opt(name: str, kind: type | tuple[type, ...]) -> Any:
            value = data.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, kind):
                # Name the field and its type, never the value: a hostile server
                # could put anything there, the user's key included.
                raise ProtocolError(f"token field {name!r} has the wrong type "
                                    f"({type(value).__name__})")
            return value

        start = opt("start_ms", (int, float))
        end = opt("end_ms", (int, float))
        conf = opt("confidence", (int, float))
        speaker = data.get("speaker")
        return cls(
            text=text,
            is_final=bool(data.get("is_final", False)),
            start_ms=None if start is None else int(start),
            end_ms=None if end is None else int(end),
            confidence=None if conf is None else float(conf),
            speaker=None if speaker is None else str(speaker),
            language=opt("language", str),
            translation_status=opt("translation_status", str),
            source_language=opt("source_language", str),
        )


@dataclass(frozen=True)
class Reply:
    """One server → client message.

    An error reply has ``error_code``/``error_message`` set and no tokens; the
    server closes the connection after it.
    """

    tokens: tuple[Token, ...] = ()
    final_audio_proc_ms: int | None = None
    total_audio_proc_ms: int | None = None
    finished: bool = False
    error_code: int | None = None
    error_message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_error(self) -> bool:
        return self.error_code is not None or self.error_message is not None

    @property
    def final_tokens(self) -> tuple[Token, ...]:
        return tuple(t for t in self.tokens if t.is_final)

    @property
    def nonfinal_tokens(self) -> tuple[Token, ...]:
        return tuple(t for t in self.tokens if not t.is_final)

    def to_json(self) -> dict[str, Any]:
        if self.is_error:
            return {"error_code": self.error_code, "error_message": self.error_message or ""}
        out: dict[str, Any] = {"tokens": [t.to_json() for t in self.tokens]}
        if self.final_audio_proc_ms is not None:
            out["final_audio_proc_ms"] = self.final_audio_proc_ms
        if self.total_audio_proc_ms is not None:
            out["total_audio_proc_ms"] = self.total_audio_proc_ms
        if self.finished:
            out["finished"] = True
        out.update(self.extra)
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


_KNOWN_REPLY_KEYS = {
    "tokens",
    "final_audio_proc_ms",
    "total_audio_proc_ms",
    "finished",
    "error_code",
    "error_message",
}


def parse_reply(message: str | bytes | dict[str, Any]) -> Reply:
    """Parse one server message; raise :class:`ProtocolError` if it is not one."""
    data = message if isinstance(message, dict) else load_reply(message)
    return reply_from_data(data)


def reply_text(message: str | bytes) -> str:
    """A server frame as text (a binary frame holding JSON is decoded leniently)."""
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else message


def load_reply(message: str | bytes) -> dict[str, Any]:
    """The JSON object of one server frame, not yet checked field by field.

    This is the cheap part of :func:`parse_reply` (the C JSON parser and a nesting
    check): a relay that passes the server's text on unchanged reads only the fields
    it acts on from this dict. Raises :class:`ProtocolError`.
    """
    text = reply_text(message)
    if _too_deep(text):
        raise ProtocolError("reply is nested too deeply")
    try:
        data = _REPLY_DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"reply is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ProtocolError("reply is not a JSON object")
    return data


def is_error_data(data: dict[str, Any]) -> bool:
    """Whether a loaded reply is an error reply (the server closes after it)."""
    return "error_code" in data or "error_message" in data


def reply_from_data(data: dict[str, Any]) -> Reply:
    """A :class:`Reply` from a loaded JSON object, every field checked."""
    if not isinstance(data, dict):
        raise ProtocolError("reply is not a JSON object")
    try:
        return _reply_from(data)
    except (OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"reply has a value out of range ({type(exc).__name__})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every reply: json.loads with an option builds a new one per call.
_REPLY_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _reply_from(data: dict[str, Any]) -> Reply:
    if "error_code" in data or "error_message" in data:
        code = data.get("error_code")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError, OverflowError):
            code = None
        return Reply(
            error_code=code,
            error_message=str(data.get("error_message") or "unknown error"),
        )

    raw_tokens = data.get("tokens", [])
    if not isinstance(raw_tokens, list):
        raise ProtocolError("reply 'tokens' is not a list")

    def ms(name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"reply field {name!r} is not a number")
        return int(value)

    return Reply(
        tokens=tuple(Token.from_json(t) for t in raw_tokens),
        final_audio_proc_ms=ms("final_audio_proc_ms"),
        total_audio_proc_ms=ms("total_audio_proc_ms"),
        finished=bool(data.get("finished", False)),
        extra={k: v for k, v in data.items() if k not in _KNOWN_REPLY_KEYS},
    )


def error_reply(code: int, message: str) -> Reply:
    return Reply(error_code=code, error_message=message)


# -- client → server -------------------------------------------------------------------
#
# Every frame a client sends is built here and every frame a server receives is parsed
# here: the upstream driver, the local server and the standalone proxy share one
# definition of start, audio, finalize, keepalive and end of stream.

@dataclass(frozen=True)
class StartMessage:
    """The first frame: the session's configuration (JSON object, never the key)."""

    config: dict[str, Any]


@dataclass(frozen=True)
class AudioFrame:
    data: bytes


@dataclass(frozen=True)
class FinalizeRequest:
    trailing_silence_ms: int | None = None


@dataclass(frozen=True)
class KeepaliveMessage:
    pass


@dataclass(frozen=True)
class EndOfStream:
    pass


ClientMessage = StartMessage | AudioFrame | FinalizeRequest | KeepaliveMessage | EndOfStream

#: The deepest JSON nesting a control frame may have; deeper frames are refused
#: before ``json`` recurses into them.
_MAX_JSON_DEPTH = 32
_MAX_CONTROL_BYTES = 64 * 1024


def encode_client_message(message: ClientMessage) -> str | bytes:
    """The WebSocket frame for one client message (text for JSON, binary for audio)."""
    if isinstance(message, AudioFrame):
        return message.data
    if isinstance(message, EndOfStream):
        return END_OF_STREAM
    if isinstance(message, KeepaliveMessage):
        return KEEPALIVE_MESSAGE
    if isinstance(message, FinalizeRequest):
        return finalize_message(message.trailing_silence_ms)
    if isinstance(message, StartMessage):
        return json.dumps(message.config, ensure_ascii=False)
    raise TypeError(f"not a client message: {type(message).__name__}")


_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """Whether brackets nest deeper than the limit (brackets in strings count too).

    Runs on every reply, so the common case costs two C-level counts; only a text
    with more opening brackets than the limit is walked, bracket by bracket.
    """
    if text.count("[") + text.count("{") <= _MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _load_json_object(frame: str, what: str) -> dict[str, Any]:
    if len(frame) > _MAX_CONTROL_BYTES:
        raise ProtocolError(f"the {what} is over {_MAX_CONTROL_BYTES} bytes")
    if _too_deep(frame):
        raise ProtocolError(f"the {what} is nested too deeply")
    try:
        data = json.loads(frame)
    except ValueError:
        raise ProtocolError(f"the {what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"the {what} must be a JSON object")
    return data


def parse_start_message(frame: str | bytes) -> StartMessage:
    """Parse a session's first frame; raise :class:`ProtocolError` (a 400) if it is not one.

    Only the shape is checked here; what the options mean is
    :meth:`SonioxConfig.from_start_message`'s job.
    """
    if not isinstance(frame, str):
        raise ProtocolError("the first message must be the JSON start message (a text "
                            "frame), not audio")
    return StartMessage(_load_json_object(frame, "start message"))


#: The longest silence a finalize may say follows the audio (a minute; more is a mistake).
MAX_TRAILING_SILENCE_MS = 60_000


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """Parse a frame a client sent after the start message.

    Binary frames are audio, an empty frame (text or binary) ends the stream, and a
    text frame is a ``finalize`` or ``keepalive`` control message. Anything else
    raises :class:`ProtocolError` with a message fit to send back to the client.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        return AudioFrame(data) if data else EndOfStream()
    if frame == "":
        return EndOfStream()
    control = _load_json_object(
        frame, "text message (send audio as binary frames; text frames must be JSON "
        "control messages or empty)")
    kind = control.get("type")
    if kind == "keepalive":
        return KeepaliveMessage()
    if kind == "finalize":
        silence = control.get("trailing_silence_ms")
        if silence is not None and (isinstance(silence, bool) or not isinstance(silence, int)
                                    or not 0 <= silence <= MAX_TRAILING_SILENCE_MS):
            raise ProtocolError("trailing_silence_ms must be a non-negative integer of at "
                                f"most {MAX_TRAILING_SILENCE_MS}")
        return FinalizeRequest(silence)
    raise ProtocolError(f"unknown control message type {str(kind)[:40]!r}; expected "
                        "'finalize' or 'keepalive'")


def finalize_message(trailing_silence_ms: int | None = None) -> str:
    msg: dict[str, Any] = {"type": "finalize"}
    if trailing_silence_ms is not None:
        msg["trailing_silence_ms"] = int(trailing_silence_ms)
    return json.dumps(msg)


KEEPALIVE_MESSAGE = json.dumps({"type": "keepalive"})
END_OF_STREAM = b""
