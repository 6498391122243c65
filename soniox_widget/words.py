"""Words: how Soniox's tokens join into words and text, and the word model.

One place for the rules every view of a transcript shares (the live text a session
rejoins after a reconnect, ``final_text``, utterances, subtitles, the DataFrame):

- a token that starts with a space starts a word; one without, or a punctuation-only
  token (even French ``" ?"``), continues the word before;
- opening marks (``¿``, ``(``, ``«``, ``「`` ...) belong to the word after them;
- scripts written without spaces (Thai, Lao, Myanmar, Khmer, Chinese, Japanese) get no
  space at a forced break (an endpoint, a reconnect); Hangul is spaced.

Pure, no I/O; :mod:`.transcript` and :mod:`.exports` build on it, the session core
asks :func:`space_between` when a new connection continues the text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Protocol

from .protocol import Token

#: The columns of :meth:`Transcript.words` and :meth:`Transcript.to_dataframe`.
WORD_COLUMNS = ("word", "start_ms", "end_ms", "confidence", "speaker", "language",
                "translation_status", "utterance")


@dataclass(frozen=True)
class Utterance:
    """What one speaker said in one go, and its translation.

    ``text`` has no leading space; ``start_ms``/``end_ms`` span its timed words
    (``None`` if none had timings); ``language`` is the language most of its words
    were in. ``translation`` is best effort, see :class:`Transcript`.

    Example::

        for u in transcript.utterances:
            print(f"[{u.speaker}] {u.text} / {u.translation}")
    """

    text: str
    start_ms: int | None
    end_ms: int | None
    speaker: str | None
    language: str | None
    translation: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Word:
    """One word: its tokens joined (Soniox sends sub-word pieces such as ``" beau"``,
    ``"ti"``, ``"ful"``).

    A token that starts with a space starts a new word; a token without one, or a
    punctuation token (even ``" ?"``, as French writes it), belongs to the word before.
    ``space_before`` says whether the word was separated from the one before it;
    ``utterance`` is its index into :attr:`Transcript.utterances` (the open utterance
    has the index it will get when it completes).
    """

    text: str
    start_ms: int | None
    end_ms: int | None
    confidence: float | None
    speaker: str | None
    language: str | None
    translation_status: str | None
    utterance: int
    space_before: bool = True
    tokens: tuple[Token, ...] = ()

    @classmethod
    def of(cls, tokens: Sequence[Token], utterance: int, space_before: bool = True) -> Word:
        starts = [t.start_ms for t in tokens if t.start_ms is not None]
        ends = [t.end_ms for t in tokens if t.end_ms is not None]
        confidences = [t.confidence for t in tokens if t.confidence is not None]
        return cls(
            text="".join(t.text for t in tokens).strip(),
            start_ms=min(starts) if starts else None,
            end_ms=max(ends) if ends else None,
            confidence=fmean(confidences) if confidences else None,
            speaker=next((t.speaker for t in tokens if t.speaker is not None), None),
            language=next((t.language for t in tokens if t.language is not None), None),
            translation_status=tokens[0].translation_status if tokens else None,
            utterance=utterance,
            space_before=space_before,
            tokens=tuple(tokens),
        )

    def to_dict(self) -> dict[str, Any]:
        """The row of :meth:`Transcript.words` (the columns in :data:`WORD_COLUMNS`)."""
        return {"word": self.text, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "confidence": self.confidence, "speaker": self.speaker,
                "language": self.language, "translation_status": self.translation_status,
                "utterance": self.utterance}


#: Marks that open something and so belong to the word after them, not the one before.
OPENING_MARKS = frozenset("¿¡\"'“„«([{「『【"
                          "\N{LEFT SINGLE QUOTATION MARK}"
                          "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}")
#: Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, kana, CJK
#: ideographs, full-width forms); Hangul is not among them.
UNSPACED_SCRIPTS = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3000, 0x30FF),
                    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))


def attaches_to_previous(text: str) -> bool:
    """A punctuation-only token (``","``, ``" ?"``, ``"..."``) ends the word before it."""
    core = text.strip()
    return bool(core) and core[0] not in OPENING_MARKS and all(
        unicodedata.category(c)[0] == "P" and unicodedata.category(c) not in ("Ps", "Pi")
        for c in core)


def is_unspaced(ch: str) -> bool:
    """``ch`` is of a script written without spaces between words: a forced word break
    (an endpoint, a reconnect) there must not add one."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in UNSPACED_SCRIPTS)


def space_between(before: str, after: str) -> bool:
    """Whether text ending in ``before`` and text starting with ``after``, which a new
    session wrote without a leading space, need one between them (a reconnect's first
    word continues the text; a word in an unspaced script, or after one, does not)."""
    first, last = after[:1], before[-1:]
    # An ASCII apostrophe opens a quote or goes on a word ("'s"): no space is the safe
    # guess there, as for any other mark.
    opens = first in OPENING_MARKS and first != "'"
    return bool(first and last) and not last.isspace() and not is_unspaced(last) \
        and (first.isalnum() or opens) and not is_unspaced(first)


class WordJoiner:
    """Joins tokens into words as they arrive (a word may span replies: ``"Hel"`` final
    in one, ``"lo"`` in the next)."""

    def __init__(self) -> None:
        self.words: list[list[Token]] = []
        self.spaced: list[bool] = []
        self._forced_break = True  # the first token starts a word
        self._space_pending = False  # a whitespace-only token came before

    def force_break(self) -> None:
        """After ``<end>``/``<fin>`` or the end of a session the next token is a new word,
        whether or not it starts with a space."""
        self._forced_break = True

    def starts_word(self, token: Token) -> bool | None:
        """Whether ``token`` would start a new word; ``None`` for a whitespace-only token."""
        text = token.text
        if not text.strip():
            return None
        if self._forced_break or not self.words:
            return True
        spaced = text[0].isspace() or self._space_pending
        return spaced and not attaches_to_previous(text)

    def add(self, token: Token) -> bool:
        """Add one token; say whether it started a new word."""
        new = self.starts_word(token)
        if new is None:
            self._space_pending = self._space_pending or bool(token.text)
            return False
        text = token.text
        if new:
            spaced = text[0].isspace() or self._space_pending
            if self._forced_break and not spaced:
                spaced = not is_unspaced(text[0])
            self.words.append([token])
            self.spaced.append(spaced)
        else:
            self.words[-1].append(token)
        self._forced_break = False
        self._space_pending = False
        return new


def words_of(tokens: Iterable[Token], utterance: int = 0) -> list[Word]:
    """Join tokens into :class:`Word` objects (special tokens are skipped)."""
    joiner = WordJoiner()
    for tok in tokens:
        if not tok.is_special:
            joiner.add(tok)
    return [Word.of(toks, utterance, spaced)
            for toks, spaced in zip(joiner.words, joiner.spaced, strict=True)]


class _Spaced(Protocol):
    text: str
    space_before: bool


def join_words(words: Iterable[_Spaced]) -> str:
    """The words (or subtitle pieces) as text: a space where the speaker's text had one."""
    out: list[str] = []
    for w in words:
        if out and w.space_before:
            out.append(" ")
        out.append(w.text)
    return "".join(out)
