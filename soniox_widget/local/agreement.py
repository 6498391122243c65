"""Turning repeated Whisper decodes into a stream of final and non-final words: pure logic.

Whisper is not a streaming model. The "LocalAgreement" policy (as in the
whisper_streaming work) re-decodes a rolling buffer every step; the words that
two consecutive hypotheses agree on are committed as final, the rest stay
non-final. Committed words whose audio is still in the buffer are given to the next
decode as its forced start (see :mod:`.whisper_window`), so a decode's new words are
exactly what follows them; committed audio is cut from the buffer at pauses, so the
work per step stays bounded however long the session runs.
"""

from __future__ import annotations

import itertools
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


#: Speech faster than this (words per second of audio, plus a few) is not speech: a
#: decoder that loops fills a second of audio with ten words or more.
MAX_WORDS_PER_S = 6.0


def find_loop(words: Sequence[Word], seconds: float, start: int = 0) -> int | None:
    """Where a hypothesis stops being speech and becomes a decoder loop, or None.

    Whisper's decoder, when it loses its place, says a stretch again and again
    ("the age of the age of the age of ..."). People repeat themselves too ("Hello?
    Hello? Hello?", "Fail again. Fail again."), but not a phrase three times in a row,
    nor a single word five times, and not faster than about six words a second of
    audio. Returns the index just after the first copy of the repeated stretch (or
    where the words outrun ``seconds`` of audio), so what came before is kept.

    ``start``: the words before it are already settled (final); only a repeat that
    reaches past it counts, so a loop made of one copy per step is seen too.
    """
    keys = [w.key for w in words]
    n = len(keys)
    for i in range(n):
        for p in range(1, 9):
            if i + 2 * p > n:
                break
            block = keys[i : i + p]
            if not all(block):
                continue
            r = 1
            while keys[i + r * p : i + (r + 1) * p] == block:
                r += 1
            if r >= (5 if p == 1 else 3) and i + r * p > start:
                return i + p
    most = int(MAX_WORDS_PER_S * max(0.0, seconds)) + 3
    return most if n > most else None


def speech_room(speech_s: float) -> int:
    """How many words ``speech_s`` seconds of speech (as the VAD heard it) can hold.

    Given a context that says a phrase and a moment of silence, Whisper can write the
    phrase again into the silence with every word squeezed into it ("ask what your
    country can do for you" where only "ask what" was said, the rest a pause); a
    loop check does not see it, as nothing repeats within the decode.
    """
    return int(MAX_WORDS_PER_S * max(0.0, speech_s)) + 1


def echoed_tail(words: Sequence[Word], known: Sequence[Word], longest: int = 12) -> int:
    """How many leading ``words`` say again the last words of ``known`` (by text).

    Only for a decode that continues after a decode that stopped early: there, a
    leading run equal to the end of what is known is the decoder going over the same
    audio again ("... you can do for your country. You can do for your country."), not
    the speaker repeating it at the very end of the stream.
    """
    keys = [w.key for w in words]
    tail = [w.key for w in known[-longest:]]
    for n in range(min(len(keys), len(tail)), 0, -1):
        if keys[:n] == tail[-n:] and all(keys[:n]):
            return n
    return 0


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


#: How the rest of a word Whisper split off begins (a hyphen, an apostrophe).
_JOINED = ("-", "'", "\u2019")


def to_tokens(words: Sequence[Word], *, is_final: bool, first_in_stream: bool,
              language: str | None = "en") -> list[Token]:
    """Words as Soniox tokens; the stream's very first word has no leading space.

    Whisper writes the rest of a hyphenated word or a clitic as a word of its own
    without a space ("ill" "-disposed", "John" "'s"): it stays joined to the word
    before, as a Soniox sub-word token is. Any other word gets its space.
    """
    out = []
    for i, w in enumerate(words):
        text = w.text
        if i == 0 and first_in_stream:
            text = text.lstrip()
        elif not text.startswith((" ", *_JOINED)):
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
    """When to cut committed audio from the front of the buffer.

    Committed words still in the buffer are the next decode's forced start, re-timed
    by every decode, so a cut between two of them (by those times) is safe: if it
    clips the first sound of the word after it, that word is forced anyway. Keeping
    ``keep_s`` of committed audio anchors the decode; keeping more costs more than it
    gains (lockstep on the 12 human clips, 2026-12-07: keep_s 1 / 4 / 8 s gave mean
    live-file WER +0.055 / +0.059 / +0.048, phrases repeated 0 / 4 / 3, 0.15 / 0.19 /
    0.25 s a decode: the longer forced start is more often written again). If nothing
    is agreed for
    ``hard_s`` (a long run-on utterance), everything is committed and cut, so memory
    and work stay bounded.
    """

    keep_s: float = 1.0
    hard_s: float = 12.0

    def cut_at(self, buffer_start: float, committed: Sequence[Word]) -> float | None:
        """Where to cut (stream seconds), or None: the middle of the latest gap between
        committed words that leaves at least ``keep_s`` of them."""
        if len(committed) < 2:
            return None
        latest = committed[-1].end - self.keep_s
        gaps = [(a.end + b.start) / 2 for a, b in itertools.pairwise(committed)]
        fit = [g for g in gaps if buffer_start < g <= latest]
        return max(fit) if fit else None

    def must_flush(self, buffer_start: float, buffer_end: float) -> bool:
        return buffer_end - buffer_start > self.hard_s
