"""The messages between the widget's views (``static/widget.js``) and the kernel: pure.

This is the Python counterpart of the front end's ``send``/``onCustom``: every
message a view sends is parsed here (a bad one raises :class:`ViewMessageError`
naming what is wrong), and every message the kernel sends a view is built here.

View → kernel: ``start``, ``chunk`` (+ one binary buffer), ``stop``, ``abort``,
``pause``, ``resume``, ``heartbeat``, ``finalize``, ``snapshot_request``,
``view_error``, ``unavailable`` (this front end can never record: why).
Kernel → view: ``delta``, ``snapshot``, ``clear``, ``rejected``, ``stop_request``,
``pause_request``, ``resume_request``.

Also the shapes both sides share through synced traits: the ``status`` values
(:data:`STATUSES`, which the front end's ``KERNEL_STATUSES`` must equal; a test
checks it) and the ``saved_transcript`` dict (:func:`saved_transcript`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .transcript import Segment

#: The widget's ``status`` trait, in the order a recording goes through them. The front
#: end's ``KERNEL_STATUSES`` (static/widget.js) is the same list; tests hold them equal.
STATUSES = ("idle", "connecting", "recording", "paused", "reconnecting", "finishing", "error")
#: Statuses in which a recording is open.
BUSY = ("connecting", "recording", "paused", "reconnecting", "finishing")
#: Characters of text kept in ``saved_transcript`` (it is saved with the notebook): the
#: end of a longer recording, so a notebook file stays small.
SAVED_TEXT_LIMIT = 20_000


class ViewMessageError(ValueError):
    """A view sent something that is not a valid message."""


@dataclass(frozen=True)
class Start:
    session: str
    view: str
    mime_type: str = ""


@dataclass(frozen=True)
class Chunk:
    session: str
    seq: int
    data: bytes


@dataclass(frozen=True)
class Stop:
    session: str
    chunks: int | None


@dataclass(frozen=True)
class Abort:
    session: str
    kind: str
    message: str


@dataclass(frozen=True)
class Pause:
    session: str


@dataclass(frozen=True)
class Resume:
    session: str


@dataclass(frozen=True)
class Heartbeat:
    session: str


@dataclass(frozen=True)
class Finalize:
    session: str | None


@dataclass(frozen=True)
class SnapshotRequest:
    pass


@dataclass(frozen=True)
class Unavailable:
    """A view found at render that its page has no usable microphone."""

    kind: str
    message: str


@dataclass(frozen=True)
class ViewError:
    message: str


ViewMessage = (Start | Chunk | Stop | Abort | Pause | Resume | Heartbeat | Finalize
               | SnapshotRequest | ViewError | Unavailable)
#: Messages that belong to one recording (they carry its session id).
SessionMessage = (Chunk, Stop, Abort, Pause, Resume, Heartbeat)


def _text(content: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = content.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ViewMessageError(f"{content.get('type')} message without a valid {name!r}")
    return value[:200]


def parse_view_message(content: Any, buffers: Sequence[Any] = ()) -> ViewMessage:
    """Parse one message from a view; buffers must already be copied to ``bytes``."""
    if not isinstance(content, dict):
        raise ViewMessageError(f"expected a JSON object, got {type(content).__name__}")
    kind = content.get("type")
    if kind == "start":
        return Start(_text(content, "session"), _text(content, "view"),
                     _text(content, "mime_type", required=False))
    if kind == "chunk":
        seq = content.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ViewMessageError(f"chunk without a valid seq number: {str(seq)[:20]!r}")
        if not buffers:
            raise ViewMessageError(f"chunk {seq} has no binary buffer")
        return Chunk(_text(content, "session"), seq, bytes(buffers[0]))
    if kind == "stop":
        chunks = content.get("chunks")
        ok = isinstance(chunks, int) and not isinstance(chunks, bool) and chunks >= 0
        return Stop(_text(content, "session"), chunks if ok else None)
    if kind == "abort":
        return Abort(_text(content, "session"), _text(content, "kind", required=False),
                     _text(content, "message", required=False)
                     or "The browser could not record.")
    if kind == "pause":
        return Pause(_text(content, "session"))
    if kind == "resume":
        return Resume(_text(content, "session"))
    if kind == "heartbeat":
        return Heartbeat(_text(content, "session"))
    if kind == "finalize":
        return Finalize(content.get("session") if isinstance(content.get("session"), str)
                        else None)
    if kind == "snapshot_request":
        return SnapshotRequest()
    if kind == "unavailable":
        return Unavailable(_text(content, "kind"), _text(content, "message"))
    if kind == "view_error":
        return ViewError(str(content.get("message"))[:2000])
    raise ViewMessageError(f"unknown message type {str(kind)[:40]!r}")


# -- kernel → view ------------------------------------------------------------------------


def segments_json(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    return [s.to_json() for s in segments]


def delta(rev: int, base_rev: int, final: Sequence[Segment], nonfinal: Sequence[Segment],
          translation: str = "", nonfinal_translation: str | None = None) -> dict[str, Any]:
    """What one reply changed; a view whose last ``rev`` is not ``base_rev`` asks for a
    snapshot instead of applying it. ``translation`` is appended to the view's
    translation line; ``nonfinal_translation`` (when given) replaces its grey tail."""
    out: dict[str, Any] = {"type": "delta", "rev": rev, "base_rev": base_rev,
                           "final": segments_json(final), "nonfinal": segments_json(nonfinal)}
    if translation:
        out["translation"] = translation
    if nonfinal_translation is not None:
        out["nonfinal_translation"] = nonfinal_translation
    return out


def snapshot(rev: int, segments: Sequence[Segment], nonfinal: Sequence[Segment],
             translation: str = "", nonfinal_translation: str = "") -> dict[str, Any]:
    return {"type": "snapshot", "rev": rev, "segments": segments_json(segments),
            "nonfinal": segments_json(nonfinal), "translation": translation,
            "nonfinal_translation": nonfinal_translation}


def clear(rev: int) -> dict[str, Any]:
    return {"type": "clear", "rev": rev}


def rejected(view: str, session: str, reason: str) -> dict[str, Any]:
    return {"type": "rejected", "view": view, "session": session, "reason": reason}


def stop_request() -> dict[str, Any]:
    return {"type": "stop_request"}


def pause_request() -> dict[str, Any]:
    return {"type": "pause_request"}


def resume_request() -> dict[str, Any]:
    return {"type": "resume_request"}


# -- the saved transcript -----------------------------------------------------------------


def saved_transcript(segments: Sequence[Segment], translation: str = "",
                     limit: int = SAVED_TEXT_LIMIT) -> dict[str, Any]:
    """The ``saved_transcript`` trait for a finished recording: its final text (``text``),
    the segments the view draws, the translation, bounded to the last ``limit``
    characters each (``truncated`` says whether anything was cut)."""
    return bound_saved_transcript({"segments": segments_json(segments),
                                   "translation": translation}, limit)


def bound_saved_transcript(value: Any, limit: int = SAVED_TEXT_LIMIT) -> dict[str, Any]:
    """A well-formed, bounded ``saved_transcript`` from whatever a view (or Python) set.

    Idempotent: a value it returned comes back unchanged, so a view that sets the
    kernel's own value again changes nothing (no echo, no ping-pong).
    """
    if not isinstance(value, dict) or not value:
        return {}
    kept: list[dict[str, Any]] = []
    room = limit
    truncated = bool(value.get("truncated"))
    segments = value.get("segments")
    for seg in reversed(segments if isinstance(segments, list) else []):
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            continue
        text = seg["text"]
        if room <= 0:
            truncated = True
            break
        if len(text) > room:
            seg = {**seg, "text": text[-room:]}
            truncated = True
        kept.append(seg)
        room -= len(seg["text"])
    kept.reverse()
    translation = value.get("translation")
    translation = translation if isinstance(translation, str) else ""
    if len(translation) > limit:
        translation, truncated = translation[-limit:], True
    out: dict[str, Any] = {"text": "".join(s["text"] for s in kept), "segments": kept,
                           "translation": translation}
    if truncated:
        out["truncated"] = True
    return out
