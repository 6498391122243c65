"""Subtitles, a DataFrame and files built from a :class:`~soniox_widget.transcript.Transcript`.

Pure functions of the transcript's *final* words (a non-final guess is never
exported); only :func:`save` writes anything. :class:`Transcript` exposes them as
``to_srt()``, ``to_vtt()``, ``to_dataframe()`` and ``save(path)``.

Subtitle cues follow the speech: a new cue starts with every utterance and after every
sentence end (a word ending in ``.``, ``!`` or ``?``), and a longer stretch is cut so that
a cue is readable: at most two lines of :data:`MAX_LINE_CHARS` characters, broken at word
boundaries, lasting at most about :data:`MAX_CUE_MS`. Times come from the words'
``start_ms``/``end_ms``; a word without timings keeps its text but does not move the
cue's times. Translated tokens carry no timings, so a translated cue shares out the
time of the utterance it belongs to, in proportion to its length.

Example::

    from soniox_widget.exports import to_srt
    Path("talk.srt").write_text(to_srt(transcript))
    transcript.save("talk.es.vtt", translation=True)
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .words import WORD_COLUMNS, Utterance, Word, join_words

if TYPE_CHECKING:
    import pandas

    from .transcript import Transcript

#: Subtitle guidelines (BBC, Netflix) keep a line to about 42 characters...
MAX_LINE_CHARS = 42
#: ...and a cue to two lines...
MAX_LINES = 2
#: ...shown for at most about 7 seconds.
MAX_CUE_MS = 7000
#: What :func:`save` can write, by file suffix.
SUPPORTED_SUFFIXES = (".csv", ".json", ".srt", ".txt", ".vtt")

_SENTENCE_ENDS = frozenset(".!?…。\N{FULLWIDTH EXCLAMATION MARK}\N{FULLWIDTH QUESTION MARK}")
_CLOSING_MARKS = "\"'”\N{RIGHT SINGLE QUOTATION MARK}»)]}」』"


@dataclass(frozen=True)
class Cue:
    """One subtitle: its time, its lines (no speaker name in them) and who speaks.

    ``new_speaker`` is true on the first cue after the speaker changed; an SRT file
    names the speaker there (``Speaker 1: ...``), a WebVTT file on every cue.
    """

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str | None = None
    new_speaker: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def speaker_name(speaker: str) -> str:
    """How a subtitle names a diarized speaker (Soniox numbers them ``"1"``, ``"2"``, ...)."""
    return f"Speaker {speaker}"


# -- layout --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """The unit a line is broken around: a word, or part of one too long for a line."""

    text: str
    space_before: bool
    start_ms: int | None = None
    end_ms: int | None = None


def _width(text: str) -> int:
    """Columns on screen: a Chinese or Japanese character is as wide as two Latin ones."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _chunks(text: str, width: int) -> list[str]:
    out = [""]
    for c in text:
        if out[-1] and _width(out[-1] + c) > width:
            out.append("")
        out[-1] += c
    return out


def _pieces(words: Sequence[Word], width: int) -> list[_Piece]:
    out: list[_Piece] = []
    for w in words:
        if _width(w.text) <= width:
            out.append(_Piece(w.text, w.space_before, w.start_ms, w.end_ms))
            continue
        # Wider than a line: Chinese or Japanese (no spaces, so one "word" per run) or a
        # long name. Break it between its tokens, and a token itself if need be.
        first = True
        for tok in w.tokens:
            text = tok.text.strip()
            if not text:
                continue
            spaced = w.space_before if first else tok.text[0].isspace()
            first = False
            for i, chunk in enumerate(_chunks(text, width)):
                out.append(_Piece(chunk, spaced and i == 0, tok.start_ms, tok.end_ms))
    return out


def _sentences(pieces: Sequence[_Piece]) -> list[list[_Piece]]:
    """Split after each piece that ends a sentence (``.``, ``!``, ``?``, ``。``...)."""
    groups: list[list[_Piece]] = [[]]
    for p in pieces:
        groups[-1].append(p)
        core = p.text.rstrip(_CLOSING_MARKS)
        if core and core[-1] in _SENTENCE_ENDS:
            groups.append([])
    return [g for g in groups if g]


def _span(pieces: Sequence[_Piece]) -> tuple[int, int] | None:
    starts = [p.start_ms for p in pieces if p.start_ms is not None]
    ends = [p.end_ms for p in pieces if p.end_ms is not None]
    if not starts and not ends:
        return None
    start = min(starts) if starts else min(ends)
    end = max(ends) if ends else max(starts)
    return start, max(start, end)


def _layout(pieces: Sequence[_Piece], reserve: int, width: int) -> tuple[str, ...] | None:
    """Lines for ``pieces`` (one, or two of even length), with ``reserve`` columns of
    the first line kept for a speaker's name; ``None`` if they do not fit."""
    whole = join_words(pieces)
    if reserve + _width(whole) <= width:
        return (whole,)
    best: tuple[int, tuple[str, ...]] | None = None
    for j in range(1, len(pieces)):
        first, second = join_words(pieces[:j]), join_words(pieces[j:])
        longest = max(reserve + _width(first), _width(second))
        if longest <= width and (best is None or longest < best[0]):
            best = (longest, (first, second))
    if best is not None:
        return best[1]
    if reserve and _width(whole) <= width:
        return ("", whole)  # the name alone on the first line
    return None


def _pack(pieces: Sequence[_Piece], width: int, max_ms: int, reserve: int = 0,
          max_chars: int | None = None) -> list[tuple[list[_Piece], tuple[str, ...]]]:
    """Cut a sentence into as few cues as fit (two lines each, at most ``max_ms`` and
    ``max_chars``), and of those cuts the most even one, so that no one-word cue is
    left dangling at the end."""
    n = len(pieces)
    # Columns of pieces[a:b] joined: widths[b] - widths[a] + spaces[b] - spaces[a + 1].
    widths, spaces = [0], [0]
    for p in pieces:
        widths.append(widths[-1] + _width(p.text))
        spaces.append(spaces[-1] + (1 if p.space_before else 0))

    def columns(a: int, b: int) -> int:
        return widths[b] - widths[a] + spaces[b] - spaces[a + 1]

    def fits(a: int, b: int, room: int) -> bool:
        if columns(a, b) <= width - room or (room and columns(a, b) <= width):
            return True  # one line (or the speaker's name on a line of its own)
        return any(columns(a, j) <= width - room and columns(j, b) <= width
                   for j in range(a + 1, b))

    # best[i]: (cues, sum of squared lengths, where the last cue starts) for pieces[:i]
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)
    best[0] = (0, 0, 0)
    for i in range(1, n + 1):
        first_start: int | None = None
        last_end: int | None = None
        for j in range(i - 1, -1, -1):
            p = pieces[j]
            for t in (p.start_ms, p.end_ms):
                if t is not None:
                    first_start = t if first_start is None else min(first_start, t)
                    last_end = t if last_end is None else max(last_end, t)
            size = columns(j, i)
            ok = (fits(j, i, reserve if j == 0 else 0)
                  and (first_start is None or last_end is None
                       or last_end - first_start <= max_ms)
                  and (max_chars is None or size <= max_chars))
            if not ok and i - j > 1:
                break  # a longer cue ending here fits no better
            previous = best[j]
            if previous is not None:
                score = (previous[0] + 1, previous[1] + size * size, j)
                current = best[i]
                if current is None or score[:2] < current[:2]:
                    best[i] = score
    groups: list[tuple[list[_Piece], tuple[str, ...]]] = []
    i = n
    while i > 0:
        entry = best[i]
        assert entry is not None  # a single piece always makes a cue
        group = list(pieces[entry[2]:i])
        lines = _layout(group, reserve if entry[2] == 0 else 0, width)
        groups.append((group, lines or (join_words(group),)))
        i = entry[2]
    groups.reverse()
    return groups


@dataclass
class _RawCue:
    start_ms: int | None
    end_ms: int | None
    lines: tuple[str, ...]


def _spoken_cues(words: Sequence[Word], reserve: int, width: int,
                 max_ms: int) -> list[_RawCue]:
    out: list[_RawCue] = []
    for n, sentence in enumerate(_sentences(_pieces(words, width))):
        for pieces, lines in _pack(sentence, width, max_ms, reserve if n == 0 else 0):
            span = _span(pieces)
            out.append(_RawCue(*(span or (None, None)), lines))
    return out


def _translation_cues(words: Sequence[Word], utterance: Utterance, reserve: int,
                      width: int, max_ms: int) -> list[_RawCue]:
    sentences = _sentences(_pieces(words, width))
    start, end = utterance.start_ms, utterance.end_ms
    duration = end - start if start is not None and end is not None else None
    total = sum(_width(join_words(s)) for s in sentences)
    longest = max((_width(p.text) for s in sentences for p in s), default=0)
    max_chars: int | None = None
    if duration and duration > max_ms:
        max_chars = max(longest, total * max_ms // duration)
    while True:
        groups = [g for n, s in enumerate(sentences)
                  for g in _pack(s, width, max_ms, reserve if n == 0 else 0, max_chars)]
        sizes = [max(1, _width(join_words(g))) for g, _ in groups]
        whole = sum(sizes)
        # A cue's share of the utterance's time follows its share of the characters;
        # tighten the character budget until no cue would last longer than max_ms.
        if (duration is None or max_chars is None or max_chars <= longest
                or all(duration * size <= max_ms * whole for size in sizes)):
            break
        max_chars = max(longest, max_chars * 9 // 10)
    out: list[_RawCue] = []
    done = 0
    for (_, lines), size in zip(groups, sizes, strict=True):
        if duration is None or start is None:
            out.append(_RawCue(None, None, lines))
            continue
        cue_start = start + round(duration * done / whole)
        done += size
        out.append(_RawCue(cue_start, start + round(duration * done / whole), lines))
    return out


def subtitle_cues(transcript: Transcript, *, translation: bool = False,
                  speaker_prefix: bool = False, max_line_chars: int = MAX_LINE_CHARS,
                  max_cue_ms: int = MAX_CUE_MS) -> list[Cue]:
    """The transcript's final words (or, with ``translation=True``, its translation) as
    subtitle cues in time order.

    ``speaker_prefix`` keeps room on the first line of a cue whose speaker changed for
    an SRT-style ``"Speaker 1: "`` so the lines stay within ``max_line_chars`` with it.
    """
    raw: list[tuple[_RawCue, str | None, bool]] = []
    previous_speaker: str | None = None
    for utterance, spoken, translated in transcript.utterance_parts():
        words = translated if translation else spoken
        if not words:
            continue
        speaker = utterance.speaker
        new_speaker = speaker is not None and speaker != previous_speaker
        previous_speaker = speaker
        reserve = len(speaker_name(speaker)) + 2 if speaker_prefix and new_speaker else 0
        if translation:
            cues = _translation_cues(words, utterance, reserve, max_line_chars, max_cue_ms)
        else:
            cues = _spoken_cues(words, reserve, max_line_chars, max_cue_ms)
        raw.extend((c, speaker, new_speaker and i == 0) for i, c in enumerate(cues))

    out: list[Cue] = []
    for i, (c, speaker, new_speaker) in enumerate(raw):
        if c.start_ms is None or c.end_ms is None:
            # No timed word at all: place it after the cue before, up to the next one.
            start = out[-1].end_ms if out else 0
            following = next((r.start_ms for r, _, _ in raw[i + 1:] if r.start_ms is not None),
                             None)
            end = following if following is not None and following > start else start + 1000
        else:
            start, end = c.start_ms, c.end_ms
        out.append(Cue(start, max(end, start + 1), c.lines, speaker, new_speaker))
    out.sort(key=lambda cue: cue.start_ms)
    return out


# -- formats -------------------------------------------------------------------------


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(0, ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript, *, translation: bool = False) -> str:
    """SubRip subtitles; the speaker is named (``Speaker 1: ``) when it changes."""
    blocks: list[str] = []
    cues = subtitle_cues(transcript, translation=translation, speaker_prefix=True)
    for number, cue in enumerate(cues, 1):
        lines = list(cue.lines)
        if cue.new_speaker and cue.speaker is not None:
            lines[0] = f"{speaker_name(cue.speaker)}: {lines[0]}".rstrip()
        blocks.append(f"{number}\n{_timestamp(cue.start_ms, ',')} --> "
                      f"{_timestamp(cue.end_ms, ',')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript, *, translation: bool = False) -> str:
    """WebVTT subtitles; with diarization every cue names its speaker (``<v Speaker 1>``)."""
    out = ["WEBVTT\n"]
    for cue in subtitle_cues(transcript, translation=translation):
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        if cue.speaker is not None:
            text = f"<v {_vtt_escape(speaker_name(cue.speaker))}>{text}"
        out.append(f"{_timestamp(cue.start_ms, '.')} --> {_timestamp(cue.end_ms, '.')}\n"
                   f"{text}\n")
    return "\n".join(out)


def to_dataframe(transcript: Transcript, *, include_translation: bool = True
                 ) -> pandas.DataFrame:
    """:meth:`Transcript.words` as a DataFrame: one row per word, columns
    :data:`~soniox_widget.transcript.WORD_COLUMNS`; times as nullable integers."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("Transcript.to_dataframe needs pandas: "
                          "pip install 'soniox-widget[pandas]'") from exc
    frame = pd.DataFrame(transcript.words(include_translation=include_translation),
                         columns=list(WORD_COLUMNS))
    return frame.astype({"start_ms": "Int64", "end_ms": "Int64", "confidence": "float64",
                         "utterance": "int64"})


def save(transcript: Transcript, path: str | os.PathLike[str], *,
         translation: bool = False) -> Path:
    """Write ``transcript`` in the format ``path``'s suffix names (see
    :data:`SUPPORTED_SUFFIXES`); ``translation=True`` writes the translation in ``.srt``,
    ``.vtt`` and ``.txt`` files. Return the path written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"cannot save a transcript as {path.name!r}: the suffix must be "
                         f"one of {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix == ".csv":
        to_dataframe(transcript).to_csv(path, index=False)
        return path
    if suffix == ".srt":
        text = to_srt(transcript, translation=translation)
    elif suffix == ".vtt":
        text = to_vtt(transcript, translation=translation)
    elif suffix == ".json":
        text = json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"
    else:
        body = (transcript.translation_text if translation else transcript.final_text).strip()
        text = body + "\n" if body else ""
    path.write_text(text, encoding="utf-8")
    return path


__all__ = [
    "MAX_CUE_MS",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "SUPPORTED_SUFFIXES",
    "Cue",
    "save",
    "speaker_name",
    "subtitle_cues",
    "to_dataframe",
    "to_srt",
    "to_vtt",
]
