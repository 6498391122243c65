"""Translation, utterances, subtitles, DataFrame and files, from realistic reply streams.

The replies are built as Soniox sends them (``parse_reply`` on dicts): final tokens in
small batches, each reply followed by a non-final guess that must never reach an export,
sub-word tokens, punctuation tokens, ``<end>``/``<fin>`` markers and translated tokens
without timings. Subtitles are read back with the independent ``srt`` and ``webvtt-py``
parsers.
"""

from __future__ import annotations

import html
import io
import json
import re
import sys
from typing import Any

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from soniox_widget.exports import MAX_CUE_MS, MAX_LINE_CHARS, SUPPORTED_SUFFIXES, subtitle_cues
from soniox_widget.protocol import parse_reply
from soniox_widget.transcript import Transcript, Utterance

try:
    import pandas  # noqa: F401

    HAVE_PANDAS = True
except ImportError:
    HAVE_PANDAS = False

GUESS = "GUESSWORK"  # text that only ever appears in non-final tokens


# -- building realistic streams --------------------------------------------------------


def tok(text: str, start: int | None = None, end: int | None = None, **fields: Any
        ) -> dict[str, Any]:
    out: dict[str, Any] = {"text": text, "is_final": True}
    if start is not None:
        out.update(start_ms=start, end_ms=end, confidence=fields.pop("confidence", 0.9))
    out.update(fields)
    return out


def end_token() -> dict[str, Any]:
    return {"text": "<end>", "is_final": True}


def fin_token() -> dict[str, Any]:
    return {"text": "<fin>", "is_final": True}


def say(text: str, start: int, *, first: bool = False, ms_per_char: int = 60,
        gap: int = 90, **fields: Any) -> tuple[list[dict[str, Any]], int]:
    """Tokens for ``text`` as Soniox cuts them: long words in sub-word pieces,
    punctuation as its own token. Returns the tokens and the time after them."""
    out: list[dict[str, Any]] = []
    t = start
    for i, word in enumerate(text.split()):
        core = word.rstrip(".,!?;:")
        punctuation = word[len(core):]
        pieces = [core[:4], core[4:]] if len(core) > 7 else [core]
        for j, piece in enumerate(pieces):
            lead = " " if j == 0 and (i > 0 or not first) else ""
            duration = ms_per_char * len(piece)
            out.append(tok(lead + piece, t, t + duration, **fields))
            t += duration
        for ch in punctuation:
            out.append(tok(ch, t, t + 10, **fields))
            t += 10
        t += gap
    return out, t


def translate(text: str, language: str, source: str, **fields: Any) -> list[dict[str, Any]]:
    """Translated tokens: no timings, ``translation_status`` "translation"."""
    return [{"text": " " + w, "is_final": True, "translation_status": "translation",
             "language": language, "source_language": source, **fields}
            for w in text.split()]


def stream(items: list[dict[str, Any]], step: int = 3, finished: bool = True) -> list[Any]:
    """Replies carrying ``step`` final tokens each, plus a non-final guess (spoken and
    translated) that the next reply replaces."""
    replies = []
    for i in range(0, len(items), step):
        tokens = [*items[i:i + step],
                  {"text": " " + GUESS, "is_final": False, "start_ms": 0, "end_ms": 1},
                  {"text": " " + GUESS, "is_final": False, "translation_status": "translation"}]
        replies.append(parse_reply({"tokens": tokens, "final_audio_proc_ms": i,
                                    "total_audio_proc_ms": i + 1}))
    if finished:
        replies.append(parse_reply({"tokens": [], "finished": True}))
    return replies


def fold(replies: list[Any], **options: Any) -> tuple[Transcript, list[Any]]:
    t = Transcript(**options)
    return t, [t.apply(r) for r in replies]


def conversation(start: int = 0) -> list[dict[str, Any]]:
    """Two speakers, three turns, endpoints after each turn."""
    a, t = say("Good morning, everyone. Thanks for joining the quarterly planning call.",
               start, first=start == 0, speaker="1", language="en")
    b, t = say("Morning! Happy to be here.", t + 400, speaker="2", language="en")
    c, t = say("Let's start with the roadmap. We have three big items this quarter, and "
               "the first one is the migration of the billing system to the new platform.",
               t + 300, speaker="1", language="en")
    return [*a, end_token(), *b, end_token(), *c, end_token()]


def one_way() -> list[dict[str, Any]]:
    """English speech translated to Spanish, the translation following each chunk."""
    o = {"translation_status": "original", "language": "en"}
    a1, t = say("Hello everyone,", 0, first=True, **o)
    a2, t = say("thank you for joining us today.", t, **o)
    b1, t = say("The weather is lovely.", t + 2000, **o)
    return [*a1, *translate("Hola a todos,", "es", "en"),
            *a2, end_token(), *translate("gracias por acompañarnos hoy.", "es", "en"),
            *b1, *translate("El tiempo es agradable.", "es", "en"), end_token()]


def two_way() -> list[dict[str, Any]]:
    """An English and a Spanish speaker, each translated into the other's language."""
    en = {"translation_status": "original", "language": "en", "speaker": "1"}
    es = {"translation_status": "original", "language": "es", "speaker": "2"}
    a, t = say("Where is the station?", 0, first=True, **en)
    b, t = say("Está a dos calles.", t + 800, **es)
    c, t = say("Thank you very much.", t + 900, **en)
    return [*a, end_token(), *translate("¿Dónde está la estación?", "es", "en", speaker="1"),
            *b, end_token(), *translate("It is two blocks away.", "en", "es", speaker="2"),
            *c, *translate("Muchas gracias.", "es", "en", speaker="1"), end_token()]


MONOLOGUE = (
    "Welcome back to the channel. Today we are going to look at how speech recognition "
    "systems turn a continuous stream of audio into text that you can read, search and "
    "translate. The interesting part is that nothing waits for the end of a sentence: "
    "words appear while you are still speaking, and they settle a moment later once the "
    "model is confident about them. Subtitles have different constraints, because a "
    "viewer needs enough time to read every line and the lines must not be too long for "
    "the screen, so a good exporter has to balance timing and layout carefully without "
    "losing a single word along the way. Does that make sense? Great, let's begin!")


def monologue(speaker: str | None = None) -> list[dict[str, Any]]:
    fields = {"speaker": speaker} if speaker else {}
    items, _ = say(MONOLOGUE, 0, first=True, **fields)
    return items


# -- reading subtitles back --------------------------------------------------------------


def srt_cues(text: str) -> list[tuple[int, int, list[str]]]:
    return [(int(s.start.total_seconds() * 1000), int(s.end.total_seconds() * 1000),
             s.content.split("\n")) for s in srt.parse(text)]


def vtt_ms(stamp: str) -> int:
    h, m, s = stamp.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)


def vtt_voice(caption: Any) -> str | None:
    if hasattr(caption, "voice"):  # webvtt-py >= 0.5.1
        return caption.voice
    match = re.match(r"<v(?:\.[^ >]*)? ([^>]*)>", caption.raw_text)
    return match.group(1) if match else None


def vtt_cues(text: str) -> list[tuple[int, int, list[str], str | None]]:
    parsed = webvtt.from_buffer(io.StringIO(text))
    return [(vtt_ms(c.start), vtt_ms(c.end), html.unescape(c.text).split("\n"), vtt_voice(c))
            for c in parsed]


def assert_readable(cues: list[tuple[int, int, list[str]]] | list[Any]) -> None:
    starts = [c[0] for c in cues]
    assert starts == sorted(starts), "cues out of time order"
    for start, end, lines, *_ in cues:
        assert start < end
        assert end - start <= MAX_CUE_MS + 1, (start, end, lines)
        assert 1 <= len(lines) <= 2, lines
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines), lines


def words_in(text: str) -> list[str]:
    return text.split()


def strip_speaker(line: str) -> str:
    return re.sub(r"^Speaker \w+:\s*", "", line)


# -- translation -----------------------------------------------------------------------


def test_one_way_translation_is_kept_apart_from_the_spoken_words():
    t, deltas = fold(stream(one_way()))
    assert t.final_text == ("Hello everyone, thank you for joining us today. "
                            "The weather is lovely.")
    assert t.translation_text.strip() == ("Hola a todos, gracias por acompañarnos hoy. "
                                          "El tiempo es agradable.")
    assert t.translations == {"es": t.translation_text}
    assert all(tk.translation_status == "original" for tk in t.final_tokens)
    assert all(tk.translation_status == "translation" for tk in t.translation_tokens)
    for d in deltas:
        assert all(tk.translation_status != "translation" for tk in d.final_tokens)
        assert all(tk.translation_status == "translation" for tk in d.final_translation_tokens)
    assert "".join(d.final_translation_text for d in deltas) == t.translation_text
    assert [(u.text, u.translation) for u in t.utterances] == [
        ("Hello everyone, thank you for joining us today.",
         "Hola a todos, gracias por acompañarnos hoy."),
        ("The weather is lovely.", "El tiempo es agradable."),
    ]


def test_nonfinal_translation_is_its_own_guess():
    t = Transcript()
    d = t.apply(parse_reply({"tokens": [
        tok("Hello", 0, 300, translation_status="original", language="en"),
        {"text": " every", "is_final": False, "translation_status": "original"},
        {"text": " Hola", "is_final": False, "translation_status": "translation",
         "language": "es"}]}))
    assert (t.final_text, t.nonfinal_text) == ("Hello", " every")
    assert (t.translation_text, t.nonfinal_translation_text) == ("", " Hola")
    assert d.nonfinal_translation_text == " Hola" and d.nonfinal_translation_changed
    d = t.apply(parse_reply({"tokens": [
        {"text": " Hola", "is_final": True, "translation_status": "translation",
         "language": "es"}]}))
    assert d and d.final_translation_text == " Hola" and t.nonfinal_translation_text == ""


def test_two_way_translation_by_target_language():
    t, _ = fold(stream(two_way(), step=2))
    assert t.final_text == "Where is the station? Está a dos calles. Thank you very much."
    assert {k: v.strip() for k, v in t.translations.items()} == {
        "es": "¿Dónde está la estación? Muchas gracias.",
        "en": "It is two blocks away.",
    }
    assert [(u.speaker, u.language, u.translation) for u in t.utterances] == [
        ("1", "en", "¿Dónde está la estación?"),
        ("2", "es", "It is two blocks away."),
        ("1", "en", "Muchas gracias."),
    ]


def test_a_translation_without_language_is_filed_as_unknown():
    t = Transcript()
    t.apply(parse_reply({"tokens": [tok("Hi", 0, 200, translation_status="original"),
                                    {"text": "Salut", "is_final": True,
                                     "translation_status": "translation"}]}))
    assert t.translations == {"unknown": "Salut"}


# -- diarization -----------------------------------------------------------------------


def test_speaker_changes_split_utterances_and_subtitles_name_them():
    t, _ = fold(stream(conversation()))
    assert [(u.speaker, u.text) for u in t.utterances] == [
        ("1", "Good morning, everyone. Thanks for joining the quarterly planning call."),
        ("2", "Morning! Happy to be here."),
        ("1", "Let's start with the roadmap. We have three big items this quarter, and the "
              "first one is the migration of the billing system to the new platform."),
    ]

    cues = srt_cues(t.to_srt())
    assert_readable(cues)
    labels = [m.group(1) for _, _, lines in cues
              if (m := re.match(r"Speaker (\w+): ", lines[0]))]
    assert labels == ["1", "2", "1"]  # named when the speaker changes, not on every cue
    assert len(cues) > 3
    spoken = " ".join(strip_speaker(line) for _, _, lines in cues for line in lines)
    assert words_in(spoken) == words_in(t.final_text)

    vcues = vtt_cues(t.to_vtt())
    assert_readable(vcues)
    assert len(vcues) == len(cues)
    voices = [v for *_, v in vcues]
    assert set(voices) == {"Speaker 1", "Speaker 2"}
    # every cue is voiced, and by the speaker of its own words
    for _, _, lines, voice in vcues:
        (owner,) = [u for u in t.utterances if " ".join(lines) in u.text]
        assert voice == f"Speaker {owner.speaker}"


def test_a_speaker_change_without_a_pause_or_endpoint_still_splits():
    a, t = say("I think so.", 0, first=True, speaker="1")
    b, _ = say("I disagree.", t, speaker="2")
    tr, _ = fold(stream([*a, *b]))
    assert [(u.speaker, u.text) for u in tr.utterances] == [("1", "I think so."),
                                                            ("2", "I disagree.")]


# -- special and non-final tokens --------------------------------------------------------


def test_endpoint_and_finalize_markers_never_reach_text_or_exports(tmp_path):
    items = conversation()
    items.insert(5, fin_token())
    t, _ = fold(stream(items))
    exports = [t.final_text, t.translation_text, t.to_srt(), t.to_vtt(),
               json.dumps(t.to_dict()), *(u.text for u in t.utterances),
               *(w["word"] for w in t.words())]
    for text in exports:
        assert "<end>" not in text and "<fin>" not in text
    assert [e.kind for e in t.events].count("endpoint") == 3
    assert [e.kind for e in t.events].count("finalized") == 1


def test_nonfinal_guesses_are_never_exported_mid_stream_or_after(tmp_path):
    replies = stream([*one_way(), *conversation(start=60_000)], finished=False)
    t, _ = fold(replies)
    assert GUESS in t.nonfinal_text and GUESS in t.nonfinal_translation_text
    for when in ("mid-stream", "finished"):
        outputs = [t.final_text, t.translation_text, *t.translations.values(),
                   t.to_srt(), t.to_vtt(), t.to_srt(translation=True),
                   t.to_vtt(translation=True), json.dumps(t.to_dict()),
                   *(w["word"] for w in t.words()), repr(t.utterances),
                   repr(t.current_utterance)]
        for suffix in SUPPORTED_SUFFIXES:
            if suffix == ".csv" and not HAVE_PANDAS:
                continue
            outputs.append(t.save(tmp_path / f"{when}{suffix}").read_text(encoding="utf-8"))
        assert not [o for o in outputs if GUESS in o], when
        t.apply(parse_reply({"tokens": [], "finished": True}))


# -- utterances ------------------------------------------------------------------------


def test_utterances_split_at_endpoints():
    a, t = say("Turn on the lights.", 0, first=True)
    b, _ = say("And close the blinds.", t + 100)  # no pause: only the endpoint splits
    tr, _ = fold(stream([*a, end_token(), *b]))
    assert [u.text for u in tr.utterances] == ["Turn on the lights.", "And close the blinds."]
    assert tr.utterances[0].end_ms < tr.utterances[1].start_ms


def test_a_finalize_answer_is_not_an_utterance_boundary():
    a, t = say("Turn on", 0, first=True)
    b, _ = say("the lights.", t)
    tr, _ = fold(stream([*a, fin_token(), *b]))
    assert [u.text for u in tr.utterances] == ["Turn on the lights."]


def test_utterances_split_at_pauses_longer_than_pause_ms():
    a, t = say("First thought.", 0, first=True)
    b, t = say("Second thought", t + 1600)  # pause > 1500 ms (plus the word gap)
    c, _ = say("continues here.", t + 1200)  # 1.2 s + gap < 1.5 s: same utterance
    tr, _ = fold(stream([*a, *b, *c]))
    assert tr.pause_ms == 1500
    assert [u.text for u in tr.utterances] == ["First thought.",
                                               "Second thought continues here."]
    tr2, _ = fold(stream([*a, *b, *c]), pause_ms=1000)
    assert [u.text for u in tr2.utterances] == ["First thought.", "Second thought",
                                                "continues here."]


def test_current_utterance_is_the_open_one_until_it_completes():
    a, t = say("Hello there.", 0, first=True)
    b, _ = say("How are you", t + 50)
    tr = Transcript()
    assert tr.current_utterance is None
    tr.apply(parse_reply({"tokens": a}))
    assert tr.utterances == [] and tr.current_utterance.text == "Hello there."
    tr.apply(parse_reply({"tokens": [end_token()]}))
    assert [u.text for u in tr.utterances] == ["Hello there."]
    assert tr.current_utterance is None
    tr.apply(parse_reply({"tokens": b}))
    assert tr.current_utterance.text == "How are you"
    d = tr.apply(parse_reply({"tokens": [], "finished": True}))
    assert [u.text for u in d.utterances] == ["How are you"]
    assert tr.current_utterance is None and len(tr.utterances) == 2


@pytest.mark.parametrize("items", [conversation, one_way, two_way, monologue])
@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_each_utterance_completes_exactly_once_whatever_the_batching(items, step):
    replies = stream(items(), step=step)
    t, deltas = fold(replies)
    completed = [u for d in deltas for u in d.utterances]
    assert completed == t.utterances
    assert len(set(map(id, completed))) == len(completed)
    reference, _ = fold(stream(items(), step=1))
    assert t.utterances == reference.utterances
    assert all(isinstance(u, Utterance) and u.text == u.text.strip() for u in completed)
    assert " ".join(u.text for u in completed) == t.final_text
    assert t.current_utterance is None


def test_an_utterance_waits_for_its_translation_before_completing():
    o = {"translation_status": "original", "language": "en"}
    a, t = say("Good night.", 0, first=True, **o)
    b, _ = say("Sleep well.", t + 500, **o)
    tr = Transcript()
    d = tr.apply(parse_reply({"tokens": [*a, *translate("Buenas", "es", "en"), end_token()]}))
    assert d.utterances == ()  # the rest of its translation may still come
    assert tr.current_utterance.translation == "Buenas"
    d = tr.apply(parse_reply({"tokens": translate("noches.", "es", "en")}))
    assert d.utterances == () and tr.current_utterance.translation == "Buenas noches."
    d = tr.apply(parse_reply({"tokens": b}))
    assert [(u.text, u.translation) for u in d.utterances] == [("Good night.",
                                                                "Buenas noches.")]
    assert tr.current_utterance.text == "Sleep well."


def test_utterance_to_json():
    u = Utterance("Hi.", 0, 300, "1", "en", "Hola.")
    assert u.to_json() == {"text": "Hi.", "start_ms": 0, "end_ms": 300, "speaker": "1",
                           "language": "en", "translation": "Hola."}


# -- subtitles -------------------------------------------------------------------------


@pytest.mark.parametrize("speaker", [None, "1"])
def test_srt_of_a_long_monologue_round_trips_and_is_readable(speaker):
    t, _ = fold(stream(monologue(speaker)))
    cues = srt_cues(t.to_srt())
    assert len(cues) >= 8
    assert_readable(cues)
    text = " ".join(strip_speaker(line) for _, _, lines in cues for line in lines)
    assert words_in(text) == words_in(MONOLOGUE)
    # a cue never runs on past a sentence end
    for _, _, lines in cues:
        assert not re.search(r"[.!?]\s+\S", " ".join(lines)), lines
    assert cues[0][0] == 0 and cues[-1][1] == t.final_tokens[-1].end_ms
    assert (speaker is not None) == cues[0][2][0].startswith("Speaker 1: ")


@pytest.mark.parametrize("speaker", [None, "1"])
def test_vtt_of_a_long_monologue_round_trips_and_is_readable(speaker):
    t, _ = fold(stream(monologue(speaker)))
    text = t.to_vtt()
    assert text.startswith("WEBVTT\n")
    cues = vtt_cues(text)
    assert len(cues) >= 8
    assert_readable(cues)
    assert words_in(" ".join(line for _, _, lines, _ in cues for line in lines)) == \
        words_in(MONOLOGUE)
    assert {v for *_, v in cues} == {None if speaker is None else "Speaker 1"}
    assert [c[:2] for c in cues] == [c[:2] for c in srt_cues(t.to_srt())]


def test_cue_times_come_from_the_words():
    t, _ = fold(stream(monologue()))
    cue = subtitle_cues(t)[0]
    first_word = t.words()[0]
    assert cue.start_ms == first_word["start_ms"]
    last = t.words()[len(cue.text.split()) - 1]
    assert last["word"] == "channel." and cue.end_ms == last["end_ms"]


def test_sentence_ends_start_new_cues_even_when_short():
    a, _ = say("Yes. I agree. Let's do it!", 0, first=True)
    t, _ = fold(stream(a))
    assert [c.text for c in subtitle_cues(t)] == ["Yes.", "I agree.", "Let's do it!"]


def test_words_without_timings_keep_their_text_but_not_move_the_times():
    a, _ = say("This is", 0, first=True)
    b, _ = say("fine.", 2000)
    untimed = {"text": " really", "is_final": True}
    t, _ = fold(stream([*a, untimed, *b]))
    (cue,) = srt_cues(t.to_srt())
    assert cue[2] == ["This is really fine."]
    assert (cue[0], cue[1]) == (0, b[-1]["end_ms"])


def test_vtt_escapes_markup_in_the_words():
    a, _ = say("AT&T said <3 to R&D > all.", 0, first=True)
    t, _ = fold(stream(a))
    ((_, _, lines, _),) = vtt_cues(t.to_vtt())
    assert lines == ["AT&T said <3 to R&D > all."]
    assert "&amp;" in t.to_vtt() and "<3" not in t.to_vtt()


def test_text_without_spaces_is_broken_between_tokens():
    text = "今日は天気がとても良いので公園に散歩に行きましょう。明日は雨が降るそうです。" * 2
    items = [tok(ch, i * 150, i * 150 + 140, language="ja") for i, ch in enumerate(text)]
    t, _ = fold(stream(items, step=4))
    cues = srt_cues(t.to_srt())
    assert_readable(cues)
    assert "".join(line for _, _, lines in cues for line in lines) == text


def test_translation_subtitles_are_timed_by_their_utterance():
    t, _ = fold(stream(one_way()))
    cues = srt_cues(t.to_srt(translation=True))
    assert_readable(cues)
    assert [" ".join(lines) for _, _, lines in cues] == [
        "Hola a todos, gracias por acompañarnos hoy.", "El tiempo es agradable."]
    for (start, end, _), u in zip(cues, t.utterances, strict=True):
        assert (start, end) == (u.start_ms, u.end_ms)
    vcues = vtt_cues(t.to_vtt(translation=True))
    assert [c[:3] for c in vcues] == cues


def test_a_long_translation_is_spread_over_its_utterance():
    o = {"translation_status": "original", "language": "en", "speaker": "1"}
    spoken, _ = say(MONOLOGUE, 0, first=True, **o)
    spanish = ("Bienvenidos de nuevo al canal. Hoy vamos a ver cómo los sistemas de "
               "reconocimiento de voz convierten un flujo continuo de audio en texto que "
               "se puede leer, buscar y traducir, sin esperar al final de cada frase, y "
               "por qué los subtítulos necesitan tiempo suficiente para leer cada línea.")
    t, _ = fold(stream([*spoken, *translate(spanish, "es", "en", speaker="1")]))
    (u,) = t.utterances
    assert u.end_ms - u.start_ms > 4 * MAX_CUE_MS
    cues = srt_cues(t.to_srt(translation=True))
    assert_readable(cues)
    assert cues[0][2][0].startswith("Speaker 1: ")
    text = " ".join(strip_speaker(line) for _, _, lines in cues for line in lines)
    assert words_in(text) == words_in(spanish)
    assert cues[0][0] == u.start_ms and cues[-1][1] == u.end_ms


def test_an_empty_transcript_gives_empty_subtitles():
    t = Transcript()
    assert t.to_srt() == "" and list(srt.parse(t.to_srt())) == []
    assert vtt_cues(t.to_vtt()) == []


# -- words and DataFrame ---------------------------------------------------------------


def test_words_join_subword_tokens_and_attach_punctuation():
    items = [tok("The", 0, 100, confidence=0.9), tok(" beau", 150, 300, confidence=0.8),
             tok("ti", 300, 400, confidence=0.6), tok("ful", 400, 500, confidence=0.7),
             tok(" view", 550, 800), tok(" ?", 800, 820), tok(" \u00ab", 900, 910),
             tok("Oui", 910, 1100), tok("\u00bb", 1100, 1110)]
    t, _ = fold(stream(items, step=2))
    words = t.words()
    assert [w["word"] for w in words] == ["The", "beautiful", "view ?", "\u00abOui\u00bb"]
    beautiful = words[1]
    assert (beautiful["start_ms"], beautiful["end_ms"]) == (150, 500)
    assert beautiful["confidence"] == pytest.approx((0.8 + 0.6 + 0.7) / 3)


def test_dataframe_has_one_row_per_word():
    pd = pytest.importorskip("pandas")
    t, _ = fold(stream([*two_way(), *conversation(start=60_000)]))
    df = t.to_dataframe()
    words = t.words()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["word", "start_ms", "end_ms", "confidence", "speaker",
                                "language", "translation_status", "utterance"]
    assert len(df) == len(words) and df["word"].tolist() == [w["word"] for w in words]
    spoken = df[df.translation_status != "translation"]
    assert " ".join(spoken.word) == t.final_text
    assert spoken.start_ms.notna().all() and spoken.start_ms.is_monotonic_increasing
    translated = df[df.translation_status == "translation"]
    assert " ".join(translated.word) == " ".join(t.translation_text.split())
    assert translated.start_ms.isna().all()
    # the utterance column indexes Transcript.utterances
    for index, u in enumerate(t.utterances):
        assert " ".join(spoken[spoken.utterance == index].word) == u.text
    assert set(df.utterance) == set(range(len(t.utterances)))
    assert len(t.to_dataframe(include_translation=False)) == len(spoken)
    assert "Morning" in set(df.word.str.rstrip("!"))  # "Mor"+"ning" joined as a word


def test_dataframe_without_pandas_says_how_to_install_it(monkeypatch):
    t, _ = fold(stream(conversation()))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'soniox-widget[pandas]'")):
        t.to_dataframe()
    assert len(t.words()) > 0  # words() needs no pandas


# -- save ------------------------------------------------------------------------------


def test_save_picks_the_format_by_suffix(tmp_path):
    pd = pytest.importorskip("pandas")
    t, _ = fold(stream([*one_way(), *conversation(start=60_000)]))
    assert t.save(tmp_path / "a.srt").read_text(encoding="utf-8") == t.to_srt()
    assert list(srt.parse((tmp_path / "a.srt").read_text(encoding="utf-8")))
    t.save(tmp_path / "a.vtt")
    assert len(webvtt.read(str(tmp_path / "a.vtt")).captions) == len(subtitle_cues(t))
    t.save(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == t.to_dict()
    t.save(tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == t.final_text + "\n"
    t.save(tmp_path / "a.es.txt", translation=True)
    assert (tmp_path / "a.es.txt").read_text(encoding="utf-8") == \
        t.translation_text.strip() + "\n"
    t.save(tmp_path / "a.csv")
    back = pd.read_csv(tmp_path / "a.csv")
    assert back["word"].tolist() == [w["word"] for w in t.words()]
    assert t.save(str(tmp_path / "UPPER.SRT")).read_text(encoding="utf-8") == t.to_srt()
    t.save(tmp_path / "b.srt", translation=True)
    assert (tmp_path / "b.srt").read_text(encoding="utf-8") == t.to_srt(translation=True)


def test_save_refuses_an_unknown_suffix_and_names_the_supported_ones(tmp_path):
    t, _ = fold(stream(conversation()))
    for name in ("notes.docx", "notes"):
        with pytest.raises(ValueError) as info:
            t.save(tmp_path / name)
        for suffix in (".srt", ".vtt", ".json", ".txt", ".csv"):
            assert suffix in str(info.value)
        assert not (tmp_path / name).exists()


def test_to_dict_holds_translation_and_utterances_but_no_guess():
    t, _ = fold(stream(one_way(), step=4, finished=False))
    d = t.to_dict()
    assert "nonfinal_text" not in d
    assert d["translations"] == t.translations
    assert [u["text"] for u in d["utterances"]] == [
        u.text for u in [*t.utterances, t.current_utterance] if u is not None]
    assert all(tk["translation_status"] == "translation" for tk in d["translation_tokens"])


# -- any stream ------------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=1, max_size=14)


@st.composite
def speech(draw: Any) -> tuple[list[dict[str, Any]], int]:
    """Words with sub-word pieces, punctuation, speakers, pauses and markers."""
    items: list[dict[str, Any]] = []
    t = 0
    for i in range(draw(st.integers(1, 80))):
        word = draw(_word)
        speaker = draw(st.sampled_from(["1", "2"]))
        t += draw(st.sampled_from([40, 90, 200, 1800]))
        cut = draw(st.integers(1, len(word)))
        for j, piece in enumerate([word[:cut], word[cut:]]):
            if piece:
                lead = " " if j == 0 and i else ""
                items.append(tok(lead + piece, t, t + 50 * len(piece), speaker=speaker))
                t += 50 * len(piece)
        mark = draw(st.sampled_from(["", "", "", ",", ".", "?", "<end>", "<fin>"]))
        if mark in ("<end>", "<fin>"):
            items.append({"text": mark, "is_final": True})
        elif mark:
            items.append(tok(mark, t, t + 10, speaker=speaker))
    return items, draw(st.integers(1, 7))


@settings(max_examples=60, deadline=None)
@given(speech())
def test_any_stream_completes_each_utterance_once_and_exports_every_word(case):
    items, step = case
    t, deltas = fold(stream(items, step=step))
    assert [u for d in deltas for u in d.utterances] == t.utterances
    assert t.current_utterance is None
    spoken = [w["word"] for w in t.words()]
    assert " ".join(spoken).split() == t.final_text.split()
    for cues in (srt_cues(t.to_srt()), [c[:3] for c in vtt_cues(t.to_vtt())]):
        assert_readable(cues)
        text = " ".join(strip_speaker(line) for _, _, lines in cues for line in lines)
        assert text.split() == t.final_text.split()
