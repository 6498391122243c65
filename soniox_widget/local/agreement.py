"""Turning repeated Whisper decodes into a stream of final and non-final words: pure logic.

Whisper is not a streaming model. The "LocalAgreement" policy (as in the
whisper_streaming work) re-decodes a rolling buffer every step; the words that
two consecutive hypotheses agree on are committed as final, the rest stay
non-final. Committed audio is then cut from the buffer so the work per step
stays bounded however long the session runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..protocol import Token

_NON_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Word:
    """A recognised word with absolute stream times in seconds."""

    text: str  # with Whisper's leading space, e.g. " hello"
    start: float
    end: float
    probability: float = 1.0

    @property
    def key(self) -> str:
        return _NON_WORD.sub("", self.text.lower())


def agreed_prefix(previous: Sequence[Word], current: Sequence[Word]) -> int:
    """How many leading words the two hypotheses share (compared without case/punctuation)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a.key != b.key or not a.key:
            break
        n += 1
    return n


def new_words(words: Sequence[Word], committed: Sequence[Word], tolerance: float = 0.3,
              max_ngram: int = 5) -> list[Word]:
    """The part of a fresh decode that was not committed yet.

    The buffer still holds some committed audio, so a decode repeats committed
    words. Word timestamps wobble by a few hundred ms between decodes, so a time
    cut alone would drop or repeat a word at the seam: cut by time with a
    tolerance, then drop a leading run that repeats the end of what is committed.
    """
    if not committed:
        return list(words)
    end = committed[-1].end
    fresh = [w for w in words if w.start >= end - tolerance]
    tail = [w.key for w in committed[-max_ngram:]]
    for n in range(min(max_ngram, len(fresh), len(tail)), 0, -1):
        if [w.key for w in fresh[:n]] == tail[-n:]:
            return fresh[n:]
    return fresh


def in_order(words: Sequence[Word], after: float | None) -> list[Word]:
    """``words`` with times that never go back: each starts no earlier than the word
    before it (``after``: the start of the last word already made final).

    Whisper times a word again on every decode, and at the seam of a buffer cut the
    same stretch of audio can come out a few tens of milliseconds earlier than the word
    already sent; final tokens must still be in time order, as Soniox's are.
    """
    out: list[Word] = []
    floor = after
    for w in words:
        if floor is not None and w.start < floor:
            w = replace(w, start=floor, end=max(w.end, floor))
        out.append(w)
        floor = w.start
    return out


def to_tokens(words: Sequence[Word], *, is_final: bool, first_in_stream: bool,
              language: str | None = "en") -> list[Token]:
    """Words as Soniox tokens; the stream's very first word has no leading space."""
    out = []
    for i, w in enumerate(words):
        text = w.text
        if i == 0 and first_in_stream:
            text = text.lstrip()
        elif not text.startswith(" "):
            text = " " + text
        out.append(Token(
            text=text,
            is_final=is_final,
            start_ms=round(w.start * 1000),
            end_ms=round(w.end * 1000),
            confidence=round(float(w.probability), 3),
            language=language,
        ))
    return out


@dataclass(frozen=True)
class TrimPolicy:
    """When to cut audio from the front of the buffer.

    Once the buffer is longer than ``soft_s``, cut in the middle of a pause the speaker
    made inside the committed audio (a gap between voice-activity spans): a cut there
    clips no word. Cutting at a word's end instead, as timed by Whisper, can clip the
    first sound of the next word ("station" heard as "nation"), so that is done only
    when the buffer passes ``anywhere_s`` without a pause. If nothing is agreed for
    ``hard_s`` (a long run-on utterance), commit everything and cut anyway, so memory
    and work stay bounded.
    """

    soft_s: float = 8.0
    anywhere_s: float = 12.0
    hard_s: float = 16.0

    def cut_at(self, buffer_start: float, buffer_end: float, committed_end: float | None,
               pauses: Sequence[tuple[float, float]] = ()) -> float | None:
        """Where to cut (stream seconds), or None; ``pauses`` are silent stretches."""
        length = buffer_end - buffer_start
        if committed_end is None or committed_end <= buffer_start or length <= self.soft_s:
            return None
        quiet = [(a + b) / 2 for a, b in pauses if b <= committed_end and a > buffer_start]
        if quiet:
            return max(quiet)
        if length > self.anywhere_s:
            return committed_end
        return None

    def must_flush(self, buffer_start: float, buffer_end: float) -> bool:
        return buffer_end - buffer_start > self.hard_s
