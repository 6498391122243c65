"""Live recognition of people speaking, judged against the whole-file decode of the same
audio (issue 23): real-time pace, 120 ms webm/opus pieces, the real local server.

The policy before issue 23 wrote phrases again and again on such speech (1.5 errors per
word on a reading against 0.02 for the file decode); the bounds here catch that and any
lost phrase, with room for the few words on which a live guess and a decode of the whole
file may differ. The benchmark (benchmarks/bench_engine.py) holds the tighter goal.
"""

from __future__ import annotations

import pytest

from soniox_widget import Transcript
from soniox_widget.local import LocalSonioxServer, local_engine_available
from tests import human_speech, speech

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not local_engine_available(), reason="needs soniox-widget[local]"),
]

#: Live may make this many more errors per word than the file decode (the benchmark's
#: goal is 0.03; a looping policy made 0.9-1.5 more).
MARGIN = 0.2


@pytest.fixture(scope="module")
def engine():
    from soniox_widget.local.whisper_engine import WhisperEngine

    return WhisperEngine()


async def live(url: str, clip: human_speech.Clip) -> Transcript:
    """The clip as a browser sends it: webm/opus pieces of 120 ms at real-time pace."""
    t, _events = await human_speech.stream_live(url, speech.encode(clip.path), clip.seconds)
    return t


# The telephone call (two voices, 28 s) opens "Hello. Hello. Hello.": a loop guard that
# counted the final hellos with the new ones stopped its live transcript for good.
# Silero VAD hears almost nothing of whispered and falsetto speech: two of the four
# sentences were lost live until loudness over the noise floor counted as speech too.
@pytest.mark.parametrize("name", ["jfk_ask_not", "sense_and_sensibility_reading",
                                  "phone_call_two_voices",
                                  "whispered_and_falsetto_sentences"])
async def test_live_is_as_good_as_the_file_decode(engine, name):
    clip, = human_speech.clips(name)
    async with LocalSonioxServer(engine) as server:
        t = await live(server.url, clip)
    assert t.finished
    whole = human_speech.file_decode(engine, clip.path)
    said = clip.reference or whole
    live_wer = speech.word_error_rate(said, t.final_text)
    file_wer = speech.word_error_rate(said, whole)
    assert live_wer <= file_wer + MARGIN, (t.final_text, whole)
    assert human_speech.extra_repeats(t.final_text, said, whole) == 0, t.final_text


async def test_a_sentence_said_twice_is_written_twice(engine):
    """The same recorded sentence twice in a row: neither copy is taken for the other
    (a seam de-duplication by text dropped one; a loop wrote it more often)."""
    clip, = human_speech.clips("ill_disposed_twice")
    async with LocalSonioxServer(engine) as server:
        t = await live(server.url, clip)
    words = " ".join(speech.normalise(t.final_text))
    assert words.count("he was not") == 2, t.final_text
    assert words.count("young man") == 2, t.final_text
