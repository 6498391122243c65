"""Folding Soniox replies into a transcript: pure, no I/O (except :meth:`Transcript.save`).

Final tokens are appended once and never change; non-final tokens are replaced by
every reply. Special tokens (``<end>``, ``<fin>``) become :class:`TranscriptEvent`
entries and never appear in the text. Translated tokens (``translation_status ==
"translation"``) are kept apart from the spoken words, so ``final_text`` is always
what was said and ``translation_text`` what it means in the other language.

Final words are grouped into :class:`Utterance` objects as they arrive, so a view
or a notebook can react to "someone finished saying something" without re-reading
the whole transcript. Subtitles, a DataFrame and files are built from final words
only (see :mod:`soniox_widget.exports`): a non-final guess is never exported.

Example::

    t = Transcript()
    delta = t.apply(parse_reply(message))
    t.final_text, t.nonfinal_text, t.translation_text, delta.utterances
    t.save("talk.srt")
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import exports
from .protocol import END_TOKEN, FIN_TOKEN, Reply, Token
from .words import Utterance, Word, WordJoiner, join_words, words_of

if TYPE_CHECKING:
    import pandas

#: ``translation_status`` of a token that is a translation, not something said.
TRANSLATION_STATUS = "translation"
#: The key of :attr:`Transcript.translations` for translated tokens without a language.
UNKNOWN_LANGUAGE = "unknown"
#: A silence longer than this between two final words starts a new utterance.
DEFAULT_PAUSE_MS = 1500


def is_translation(token: Token) -> bool:
    """A translated token: text in another language, with no timings of its own."""
    return token.translation_status == TRANSLATION_STATUS


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
    """What one reply changed: final tokens appended, the new non-final tokens, events,
    and the utterances it completed.

    ``final_tokens``/``nonfinal_tokens`` hold spoken words only; the translated ones are
    in ``final_translation_tokens``/``nonfinal_translation_tokens``.
    """

    final_tokens: tuple[Token, ...] = ()
    nonfinal_tokens: tuple[Token, ...] = ()
    events: tuple[TranscriptEvent, ...] = ()
    nonfinal_changed: bool = False
    final_translation_tokens: tuple[Token, ...] = ()
    nonfinal_translation_tokens: tuple[Token, ...] = ()
    nonfinal_translation_changed: bool = False
    utterances: tuple[Utterance, ...] = ()

    @property
    def final_text(self) -> str:
        return "".join(t.text for t in self.final_tokens)

    @property
    def nonfinal_text(self) -> str:
        return "".join(t.text for t in self.nonfinal_tokens)

    @property
    def final_translation_text(self) -> str:
        return "".join(t.text for t in self.final_translation_tokens)

    @property
    def nonfinal_translation_text(self) -> str:
        return "".join(t.text for t in self.nonfinal_translation_tokens)

    def __bool__(self) -> bool:
        return bool(self.final_tokens or self.events or self.nonfinal_changed
                    or self.final_translation_tokens or self.nonfinal_translation_changed
                    or self.utterances)


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


# -- the transcript ------------------------------------------------------------------


@dataclass
class Transcript:
    """The running transcript of one or more sessions.

    Spoken words and their translation are kept apart: ``final_tokens``,
    ``final_text`` and ``nonfinal_text`` hold what was said (``translation_status``
    ``None``, ``"original"`` or ``"none"``); ``translation_tokens``,
    ``translation_text`` and ``translations`` the translated tokens.

    **Utterances.** Final words are split into :class:`Utterance` objects at ``<end>``
    endpoint tokens, where the speaker changes, and at silences longer than
    ``pause_ms`` between two words (a ``<fin>`` finalize answer is not a split). An
    utterance *completes* once, and appears in that reply's
    :attr:`TranscriptDelta.utterances` and from then on in :attr:`utterances`:

    - when it is split off, if none of its words awaits a translation
      (``translation_status == "original"``);
    - otherwise when the next spoken word arrives, or at ``finished`` — Soniox sends a
      translation just after the words it translates, so the last chunk of an
      utterance's translation usually arrives after its ``<end>``.

    **Translation of an utterance** (best effort): the final translated tokens that
    arrive while it is the current one, from its first word until it completes.
    Translated tokens that arrive when no utterance is current (before the first word)
    go to the next one. A translation that lags behind a change of speaker therefore
    lands in the next speaker's utterance: Soniox gives translated tokens no timings
    to place them by.

    Example::

        t = Transcript(pause_ms=1000)
        for message in replies:
            for u in t.apply(parse_reply(message)).utterances:
                print(u.speaker, u.text, u.translation)
        t.to_srt(), t.to_dataframe(), t.save("talk.vtt")
    """

    final_tokens: list[Token] = field(default_factory=list)
    nonfinal_tokens: list[Token] = field(default_factory=list)
    events: list[TranscriptEvent] = field(default_factory=list)
    final_audio_proc_ms: int = 0
    total_audio_proc_ms: int = 0
    finished: bool = False
    translation_tokens: list[Token] = field(default_factory=list)
    nonfinal_translation_tokens: list[Token] = field(default_factory=list)
    pause_ms: int = DEFAULT_PAUSE_MS
    _final_text: str = field(default="", init=False, repr=False)
    _translation_text: str = field(default="", init=False, repr=False)
    # Utterance bookkeeping, updated token by token in apply():
    _joiner: WordJoiner = field(default_factory=WordJoiner, init=False, repr=False,
                                 compare=False)
    # index of each utterance's first word
    _utterance_starts: list[int] = field(default_factory=list, init=False, repr=False)
    # how many utterances have their words settled (split off)
    _split: int = field(default=0, init=False, repr=False)
    _utterances: list[Utterance] = field(default_factory=list, init=False, repr=False)
    _utterance_translation: list[list[Token]] = field(default_factory=list, init=False,
                                                      repr=False)

    def final_part(self) -> Transcript:
        """A copy holding only what is final: what a failed session leaves that can be
        trusted (the words still being recognised are dropped)."""
        part = copy.deepcopy(self)
        part.nonfinal_tokens, part.nonfinal_translation_tokens = [], []
        part.total_audio_proc_ms = part.final_audio_proc_ms
        return part

    # -- text ------------------------------------------------------------------------

    @property
    def final_text(self) -> str:
        """What was said, final words only (no translation)."""
        return self._final_text

    @property
    def nonfinal_text(self) -> str:
        """The current guess of what is being said (no translation)."""
        return "".join(t.text for t in self.nonfinal_tokens)

    @property
    def text(self) -> str:
        """Final text followed by the current non-final guess."""
        return self._final_text + self.nonfinal_text

    @property
    def translation_text(self) -> str:
        """All final translated text, in the order it arrived (all target languages)."""
        return self._translation_text

    @property
    def nonfinal_translation_text(self) -> str:
        return "".join(t.text for t in self.nonfinal_translation_tokens)

    @property
    def translations(self) -> dict[str, str]:
        """Final translated text by target language (``"unknown"`` when a token has none).

        One-way translation gives one entry; two-way translation one per direction,
        e.g. ``{"es": "Hola.", "en": "Thank you."}``.
        """
        out: dict[str, str] = {}
        for t in self.translation_tokens:
            lang = t.language or UNKNOWN_LANGUAGE
            out[lang] = out.get(lang, "") + t.text
        return out

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

    # -- utterances ------------------------------------------------------------------

    @property
    def utterances(self) -> list[Utterance]:
        """The completed utterances, in order (see the class docstring for when)."""
        return list(self._utterances)

    @property
    def current_utterance(self) -> Utterance | None:
        """The utterance not completed yet: the final words after the last split (or the
        last one split off while its translation may still arrive); ``None`` if none."""
        index = len(self._utterances)
        if index >= len(self._utterance_starts):
            return None
        return self._build_utterance(index)

    def _utterance_word_range(self, index: int) -> range:
        starts = self._utterance_starts
        end = starts[index + 1] if index + 1 < len(starts) else len(self._joiner.words)
        return range(starts[index], end)

    def _utterance_words(self, index: int) -> list[Word]:
        joiner = self._joiner
        return [Word.of(joiner.words[i], index, joiner.spaced[i])
                for i in self._utterance_word_range(index)]

    def _translation_of(self, index: int) -> list[Token]:
        groups = self._utterance_translation
        return groups[index] if index < len(groups) else []

    def _build_utterance(self, index: int) -> Utterance:
        words = self._utterance_words(index)
        starts = [w.start_ms for w in words if w.start_ms is not None]
        ends = [w.end_ms for w in words if w.end_ms is not None]
        languages = Counter(w.language for w in words if w.language is not None)
        return Utterance(
            text=join_words(words),
            start_ms=min(starts) if starts else None,
            end_ms=max(ends) if ends else None,
            speaker=next((w.speaker for w in words if w.speaker is not None), None),
            # most_common keeps first-seen order on ties
            language=languages.most_common(1)[0][0] if languages else None,
            translation="".join(t.text for t in self._translation_of(index)).strip(),
        )

    def _awaits_translation(self, index: int) -> bool:
        joiner = self._joiner
        return any(t.translation_status == "original"
                   for i in self._utterance_word_range(index) for t in joiner.words[i])

    def _complete(self, upto: int, out: list[Utterance]) -> None:
        while len(self._utterances) < upto:
            u = self._build_utterance(len(self._utterances))
            self._utterances.append(u)
            out.append(u)

    def _split_off(self, out: list[Utterance]) -> None:
        """Settle the open utterance's words; complete it unless a translation may follow."""
        opened = len(self._utterance_starts)
        if self._split == opened:
            return  # nothing open: two splits in a row make no empty utterance
        self._split = opened
        if not self._awaits_translation(opened - 1):
            self._complete(opened, out)

    def _splits_before(self, token: Token) -> bool:
        """A new word starts: does it also start a new utterance (speaker change, pause)?"""
        previous = self._joiner.words[-1]
        speaker = next((t.speaker for t in previous if t.speaker is not None), None)
        if speaker is not None and token.speaker is not None and token.speaker != speaker:
            return True
        ends = [t.end_ms for t in previous if t.end_ms is not None]
        return (bool(ends) and token.start_ms is not None
                and token.start_ms - max(ends) > self.pause_ms)

    def _add_spoken(self, token: Token, out: list[Utterance]) -> None:
        joiner = self._joiner
        if joiner.starts_word(token):
            if self._split < len(self._utterance_starts) and self._splits_before(token):
                self._split_off(out)
            if self._split == len(self._utterance_starts):
                # The previous utterance is over for good: its translation is complete.
                self._complete(self._split, out)
                self._utterance_starts.append(len(joiner.words))
        joiner.add(token)

    def _add_translation(self, token: Token) -> None:
        # The current utterance (open, or split off and waiting), else the next one.
        index = len(self._utterances)
        groups = self._utterance_translation
        while len(groups) <= index:
            groups.append([])
        groups[index].append(token)

    # -- folding ---------------------------------------------------------------------

    def apply(self, reply: Reply) -> TranscriptDelta:
        """Fold one reply in and say what changed."""
        if reply.is_error:
            raise ValueError("an error reply cannot be applied to a transcript")
        appended: list[Token] = []
        translated: list[Token] = []
        events: list[TranscriptEvent] = []
        nonfinal: list[Token] = []
        nonfinal_translated: list[Token] = []
        completed: list[Utterance] = []
        for tok in reply.tokens:
            if not tok.is_final:
                if not tok.is_special:
                    (nonfinal_translated if is_translation(tok) else nonfinal).append(tok)
                continue
            if tok.text == END_TOKEN:
                events.append(TranscriptEvent("endpoint", len(self.final_tokens) + len(appended),
                                              tok.start_ms))
                self._joiner.force_break()
                self._split_off(completed)
            elif tok.text == FIN_TOKEN:
                events.append(TranscriptEvent("finalized", len(self.final_tokens) + len(appended),
                                              tok.start_ms))
                self._joiner.force_break()
            elif is_translation(tok):
                translated.append(tok)
                self._add_translation(tok)
            else:
                appended.append(tok)
                self._add_spoken(tok, completed)
        changed = nonfinal != self.nonfinal_tokens
        translation_changed = nonfinal_translated != self.nonfinal_translation_tokens
        self.final_tokens.extend(appended)
        self._final_text += "".join(t.text for t in appended)
        self.translation_tokens.extend(translated)
        self._translation_text += "".join(t.text for t in translated)
        self.nonfinal_tokens = nonfinal
        self.nonfinal_translation_tokens = nonfinal_translated
        self.events.extend(events)
        if reply.final_audio_proc_ms is not None:
            self.final_audio_proc_ms = reply.final_audio_proc_ms
        if reply.total_audio_proc_ms is not None:
            self.total_audio_proc_ms = reply.total_audio_proc_ms
        if reply.finished:
            self.finished = True
            # Nothing is pending after 'finished': a stale guess must not linger, and the
            # open utterance is complete.
            changed = changed or bool(self.nonfinal_tokens)
            translation_changed = translation_changed or bool(self.nonfinal_translation_tokens)
            self.nonfinal_tokens = []
            self.nonfinal_translation_tokens = []
            nonfinal = []
            nonfinal_translated = []
            self._joiner.force_break()
            self._split_off(completed)
            self._complete(self._split, completed)
        return TranscriptDelta(tuple(appended), tuple(nonfinal), tuple(events), changed,
                               tuple(translated), tuple(nonfinal_translated),
                               translation_changed, tuple(completed))

    def extend(self, replies: Iterable[Reply]) -> Transcript:
        for r in replies:
            self.apply(r)
        return self

    # -- exports ---------------------------------------------------------------------

    def utterance_parts(self) -> list[tuple[Utterance, list[Word], list[Word]]]:
        """Every utterance with final words (completed, then the current one), with its
        spoken and translated words: what the exports are built from."""
        parts = []
        for index in range(len(self._utterance_starts)):
            u = (self._utterances[index] if index < len(self._utterances)
                 else self._build_utterance(index))
            parts.append((u, self._utterance_words(index),
                          words_of(self._translation_of(index), index)))
        return parts

    def words(self, include_translation: bool = True) -> list[dict[str, Any]]:
        """One dict per final word (columns :data:`WORD_COLUMNS`), utterance by utterance:
        its spoken words, then its translated ones (no timings, ``translation_status``
        ``"translation"``). Non-final words are never included.

        Example::

            [w["word"] for w in t.words() if w["translation_status"] != "translation"]
        """
        rows: list[dict[str, Any]] = []
        for _, spoken, translated in self.utterance_parts():
            rows.extend(w.to_dict() for w in spoken)
            if include_translation:
                rows.extend(w.to_dict() for w in translated)
        if include_translation:
            # Translated tokens that came before any word of their utterance and were
            # never followed by one (a stream that ends oddly): keep them, not lose them.
            for index in range(len(self._utterance_starts), len(self._utterance_translation)):
                rows.extend(w.to_dict() for w in
                            words_of(self._utterance_translation[index], index))
        return rows

    def to_dataframe(self, include_translation: bool = True) -> pandas.DataFrame:
        """:meth:`words` as a pandas DataFrame, one row per word (needs the ``pandas``
        extra: ``pip install 'soniox-widget[pandas]'``)."""

        return exports.to_dataframe(self, include_translation=include_translation)

    def to_srt(self, *, translation: bool = False) -> str:
        """SubRip subtitles of the final words (or of the translation)."""

        return exports.to_srt(self, translation=translation)

    def to_vtt(self, *, translation: bool = False) -> str:
        """WebVTT subtitles of the final words (or of the translation)."""

        return exports.to_vtt(self, translation=translation)

    def save(self, path: str | os.PathLike[str], *, translation: bool = False) -> Path:
        """Write the transcript to ``path``, in the format its suffix names: ``.srt``,
        ``.vtt``, ``.txt`` (``translation=True`` writes the translation there instead),
        ``.json`` (:meth:`to_dict`) or ``.csv`` (:meth:`to_dataframe`, needs pandas)."""

        return exports.save(self, path, translation=translation)

    def token_dicts(self, tokens: Sequence[Token] | None = None) -> list[dict[str, Any]]:
        return [asdict(t) for t in (self.final_tokens if tokens is None else tokens)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready export of everything final (e.g. to store next to the audio).

        ``utterances`` lists the completed ones and then the current one; a non-final
        guess is never part of an export.
        """
        current = self.current_utterance
        return {
            "final_text": self.final_text,
            "translation_text": self.translation_text,
            "translations": self.translations,
            "tokens": self.token_dicts(),
            "translation_tokens": self.token_dicts(self.translation_tokens),
            "utterances": [u.to_json()
                           for u in [*self._utterances, *([current] if current else [])]],
            "events": [asdict(e) for e in self.events],
            "final_audio_proc_ms": self.final_audio_proc_ms,
            "total_audio_proc_ms": self.total_audio_proc_ms,
        }

    def __str__(self) -> str:
        return self.text
