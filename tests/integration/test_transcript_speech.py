"""The transcript's exports on real speech: the offline engine on espeak-ng passages.

Three sentences with pauses between them go through the local server, headless
(``transcribe_file_async``) and through the widget; the subtitles, the DataFrame, the
utterances and the audio outputs must fit the audio that was spoken.
"""

from __future__ import annotations

import asyncio
import html
import io
import wave
from itertools import pairwise

import av
import numpy as np
import pytest
import srt
import webvtt

from soniox_widget import Transcript, transcribe_file_async
from soniox_widget.local import LocalSonioxServer, local_engine_available
from soniox_widget.recorder import SonioxRecorder
from tests import speech

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not local_engine_available(), reason="needs soniox-widget[local]"),
]

SENTENCES = (
    "Please send the report to my office before the meeting tomorrow.",
    "The weather is nice today, so we will walk to the station.",
    "Thank you for your help with the project last week.",
)
PAUSE_S = 1.5  # silence between the sentences (the transcript splits at over 1.5 s anyway)
RATE = 48000
# Word times are Whisper's word timestamps: off by a few hundred ms at most. A first word
# after a pause is often placed early, in the silence before it.
SLACK_MS = 600


@pytest.fixture(scope="module")
def engine():
    from soniox_widget.local.whisper_engine import WhisperEngine

    return WhisperEngine()


@pytest.fixture(scope="module")
def server(engine):
    with LocalSonioxServer(engine) as srv:  # on its own thread: serves every test's loop
        yield srv


@pytest.fixture(scope="module")
def passage(tmp_path_factory):
    """SENTENCES with PAUSE_S of silence between them, as one 48 kHz WAV."""
    folder = tmp_path_factory.mktemp("speech")
    parts = [speech.make_speech_wav(text, folder / f"{i}.wav",
                                    lead_silence_s=0.3 if i == 0 else 0.0,
                                    tail_silence_s=1.0 if i == len(SENTENCES) - 1 else PAUSE_S,
                                    sample_rate=RATE)
             for i, text in enumerate(SENTENCES)]
    path = folder / "passage.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for part in parts:
            out.writeframes(speech.pcm16(part)[0])
    return path


@pytest.fixture(scope="module")
def transcript(server, passage) -> Transcript:
    """The passage transcribed once, headless, with endpoint detection."""
    return asyncio.run(transcribe_file_async(passage, url=server.url,
                                             enable_endpoint_detection=True,
                                             realtime=False, progress=False))


def pauses_ms(wav) -> list[tuple[int, int]]:
    """The silences of at least a second between speech in ``wav``, in ms."""
    raw, rate = speech.pcm16(wav)
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768
    frame = rate // 50  # 20 ms
    n = len(samples) // frame
    rms = np.sqrt((samples[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 0.01)
    return [(int(a + 1) * 20, int(b) * 20) for a, b in pairwise(loud) if b - a > 50]


def vtt_ms(stamp: str) -> int:
    """``"00:01:02.345"`` (or ``"01:02.345"``) in ms, as webvtt-py gives cue times."""
    *rest, seconds = stamp.split(":")
    hours, minutes = ([0, *map(int, rest)])[-2:]
    return round(((hours * 60 + minutes) * 60 + float(seconds)) * 1000)


def assert_cues_fit(cues: list[tuple[int, int, str]], duration_ms: float, text: str) -> None:
    assert cues
    for start, end, _ in cues:
        assert 0 <= start < end <= duration_ms, (start, end, duration_ms)
    for (_, end, _), (start, _, _) in pairwise(cues):
        assert end <= start, cues  # in order, never overlapping
    # Every final word is in exactly one cue, in order.
    assert " ".join(c for _, _, c in cues).split() == text.split()


def test_the_passage_has_its_pauses(passage):
    assert len(pauses_ms(passage)) == len(SENTENCES) - 1


def test_srt_cues_are_inside_the_audio_and_in_order(transcript, passage):
    assert speech.word_error_rate(" ".join(SENTENCES), transcript.final_text) <= 0.25, \
        transcript.final_text
    cues = [(round(s.start.total_seconds() * 1000), round(s.end.total_seconds() * 1000),
             s.content) for s in srt.parse(transcript.to_srt())]
    assert_cues_fit(cues, speech.duration(passage) * 1000, transcript.final_text)
    assert len(cues) >= len(SENTENCES)  # cues end at sentence ends, at least


def test_webvtt_cues_are_inside_the_audio_and_in_order(transcript, passage):
    parsed = webvtt.from_buffer(io.StringIO(transcript.to_vtt()))
    cues = [(vtt_ms(c.start), vtt_ms(c.end), html.unescape(c.text)) for c in parsed.captions]
    # The same cue times as the SRT file, to the millisecond.
    assert [c[:2] for c in cues] == [
        (round(s.start.total_seconds() * 1000), round(s.end.total_seconds() * 1000))
        for s in srt.parse(transcript.to_srt())]
    assert_cues_fit(cues, speech.duration(passage) * 1000, transcript.final_text)


def test_dataframe_has_a_row_per_word(transcript):
    df = transcript.to_dataframe()
    words = transcript.final_text.split()
    assert len(df) == len(words)
    assert df["word"].tolist() == words
    assert df["start_ms"].is_monotonic_increasing
    assert (df["start_ms"] <= df["end_ms"]).all()
    assert df["confidence"].between(0, 1).all()
    assert df["utterance"].tolist() == sorted(df["utterance"])
    assert df["utterance"].nunique() == len(transcript.utterances)


def test_utterances_split_at_the_pauses(transcript, passage):
    utterances = transcript.utterances
    assert len(utterances) >= 2, [u.text for u in utterances]
    assert " ".join(u.text for u in utterances) == transcript.final_text.strip()
    assert [e.kind for e in transcript.events].count("endpoint") >= 2
    for a, b in pairwise(utterances):
        assert a.end_ms <= b.start_ms
    # No utterance runs across a pause: each pause ends one and the next begins after it.
    for pause_start, pause_end in pauses_ms(passage):
        spanning = [u.text for u in utterances
                    if u.start_ms < pause_start - SLACK_MS and u.end_ms > pause_end + SLACK_MS]
        assert not spanning, (pause_start, pause_end, spanning)
    assert len(utterances) == len(SENTENCES), [u.text for u in utterances]
    for sentence, u in zip(SENTENCES, utterances, strict=True):
        assert speech.word_error_rate(sentence, u.text) <= 0.35, (sentence, u.text)


async def test_widget_audio_array_and_save_audio(server, passage, tmp_path, no_task_leaks):
    duration = speech.duration(passage)
    rec = SonioxRecorder(url=server.url, enable_endpoint_detection=True)
    heard = []
    rec.on_utterance(heard.append)
    try:
        t = await rec.transcribe_file(passage, realtime=False)
        assert rec.status == "idle" and rec.error == ""
        assert speech.word_error_rate(" ".join(SENTENCES), t.final_text) <= 0.25, t.final_text
        assert len(rec.utterances) >= 2 and [u.text for u in heard] == [
            u["text"] for u in rec.utterances]

        samples = rec.audio_array()
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(len(samples) - round(duration * 16000)) <= 0.020 * 16000
        assert 0.1 < float(np.abs(samples).max()) <= 1.0  # speech, not silence or noise

        saved = rec.save_audio(tmp_path / "x.flac")
        with av.open(str(saved)) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "flac"
            rate = stream.codec_context.sample_rate
            frames = sum(frame.samples for frame in container.decode(stream))
        assert rate == RATE  # the source's own rate
        assert abs(frames / rate - duration) <= 0.020
    finally:
        rec.close()
    await no_task_leaks()
