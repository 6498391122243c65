"""Folding Soniox replies into a transcript: pure, no I/O.

Final tokens are appended once and never change; non-final tokens are replaced by
every reply. Special tokens (``<end>``, ``<fin>``) become :class:`TranscriptEvent`
entries and never appear in the text.

Example::

    t = Transcript()
    delta = t.apply(parse_reply(message))
    t.final_text, t.nonfinal_text, delta.final_tokens
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .protocol import END_TOKEN, FIN_TOKEN, Reply, Token


@dataclass(frozen=True)
class TranscriptEvent:
    """``endpoint`` (the speaker finished an utterance) or ``finalized`` (answer to finalize).

    ``token_index`` is the number of final word tokens before the event, so a view
    can place a line break at the right spot.
    """

    kind: str
    token_index: int
    at_ms: int | None = None


@dataclass(frozen=True)
class Segment:
    """Consecutive final tokens of one speaker in one language."""

    text: str
    speaker: str | None = None
    language: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "speaker": self.speaker, "language": self.language}


@dataclass(frozen=True)
class TranscriptDelta:
    """What one reply changed: final tokens appended, the new non-final tokens, events."""

    final_tokens: tuple[Token, ...] = ()
    nonfinal_tokens: tuple[Token, ...] = ()
    events: tuple[TranscriptEvent, ...] = ()
    nonfinal_changed: bool = False

    @property
    def final_text(self) -> str:
        return "".join(t.text for t in self.final_tokens)

    @property
    def nonfinal_text(self) -> str:
        return "".join(t.text for t in self.nonfinal_tokens)

    def __bool__(self) -> bool:
        return bool(self.final_tokens or self.events or self.nonfinal_changed)


def segments_of(tokens: Iterable[Token]) -> list[Segment]:
    """Group tokens into runs of the same speaker and language."""
    out: list[Segment] = []
    for tok in tokens:
        if tok.is_special:
            continue
        last = out[-1] if out else None
        if last is not None and (last.speaker, last.language) == (tok.speaker, tok.language):
            out[-1] = Segment(
                last.text + tok.text,
                last.speaker,
                last.language,
                last.start_ms if last.start_ms is not None else tok.start_ms,
                tok.end_ms if tok.end_ms is not None else last.end_ms,
            )
        else:
            out.append(Segment(tok.text, tok.speaker, tok.language, tok.start_ms, tok.end_ms))
    return out


@dataclass
class Transcript:
    """The running transcript of one or more sessions."""

    final_tokens: list[Token] = field(default_factory=list)
    nonfinal_tokens: list[Token] = field(default_factory=list)
    events: list[TranscriptEvent] = field(default_factory=list)
    final_audio_proc_ms: int = 0
    total_audio_proc_ms: int = 0
    finished: bool = False
    _final_text: str = field(default="", repr=False)

    @property
    def final_text(self) -> str:
        return self._final_text

    @property
    def nonfinal_text(self) -> str:
        return "".join(t.text for t in self.nonfinal_tokens)

    @property
    def text(self) -> str:
        """Final text followed by the current non-final guess."""
        return self._final_text + self.nonfinal_text

    @property
    def speakers(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.final_tokens:
            if t.speaker is not None:
                seen.setdefault(t.speaker)
        return list(seen)

    @property
    def languages(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.final_tokens:
            if t.language is not None:
                seen.setdefault(t.language)
        return list(seen)

    def segments(self) -> list[Segment]:
        return segments_of(self.final_tokens)

    def apply(self, reply: Reply) -> TranscriptDelta:
        """Fold one reply in and say what changed."""
        if reply.is_error:
            raise ValueError("an error reply cannot be applied to a transcript")
        appended: list[Token] = []
        events: list[TranscriptEvent] = []
        nonfinal: list[Token] = []
        for tok in reply.tokens:
            if not tok.is_final:
                if not tok.is_special:
                    nonfinal.append(tok)
                continue
            if tok.text == END_TOKEN:
                events.append(TranscriptEvent("endpoint", len(self.final_tokens) + len(appended),
                                              tok.start_ms))
            elif tok.text == FIN_TOKEN:
                events.append(TranscriptEvent("finalized", len(self.final_tokens) + len(appended),
                                              tok.start_ms))
            else:
                appended.append(tok)
        changed = nonfinal != self.nonfinal_tokens
        self.final_tokens.extend(appended)
        self._final_text += "".join(t.text for t in appended)
        self.nonfinal_tokens = nonfinal
        self.events.extend(events)
        if reply.final_audio_proc_ms is not None:
            self.final_audio_proc_ms = reply.final_audio_proc_ms
        if reply.total_audio_proc_ms is not None:
            self.total_audio_proc_ms = reply.total_audio_proc_ms
        if reply.finished:
            self.finished = True
            # Nothing is pending after 'finished': a stale guess must not linger.
            changed = changed or bool(self.nonfinal_tokens)
            self.nonfinal_tokens = []
            nonfinal = []
        return TranscriptDelta(tuple(appended), tuple(nonfinal), tuple(events), changed)

    def extend(self, replies: Iterable[Reply]) -> Transcript:
        for r in replies:
            self.apply(r)
        return self

    def token_dicts(self, tokens: Sequence[Token] | None = None) -> list[dict[str, Any]]:
        return [asdict(t) for t in (self.final_tokens if tokens is None else tokens)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready export (e.g. to store next to the audio)."""
        return {
            "final_text": self.final_text,
            "nonfinal_text": self.nonfinal_text,
            "tokens": self.token_dicts(),
            "events": [asdict(e) for e in self.events],
            "final_audio_proc_ms": self.final_audio_proc_ms,
            "total_audio_proc_ms": self.total_audio_proc_ms,
        }

    def __str__(self) -> str:
        return self.text
