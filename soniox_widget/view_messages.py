"""The messages between the widget's views (``js/widget.js``) and the kernel: pure.

This is the Python counterpart of the front end's ``send``/``onCustom``: every
message a view sends is parsed here (a bad one raises :class:`ViewMessageError`
naming what is wrong), and every message the kernel sends a view is built here.

View → kernel: ``start``, ``chunk`` (+ one binary buffer), ``stop``, ``abort``,
``pause``, ``resume``, ``heartbeat``, ``finalize``, ``snapshot_request``,
``view_error``, ``unavailable`` (this front end can never record: why).
Kernel → view: ``delta``, ``snapshot``, ``clear``, ``rejected``, ``stop_request``,
``pause_request``, ``resume_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .transcript import Segment


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
