"""A spoken passage recorded like a browser does: decoded, written, and transcribed with a
progress bar."""

from __future__ import annotations

import asyncio
import io
import shutil
import wave

import av
import numpy as np
import pytest
from tqdm import tqdm

from soniox_widget import SonioxError, transcribe_file
from soniox_widget.audio import ChunkDecoder, decode_bytes, write_audio
from soniox_widget.headless import paced_chunks
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.session import NO_RECONNECT
from tests import speech
from tests.speech import write_wav as write_pcm_wav

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs espeak-ng to make speech")

PASSAGE = ("Please send the report to my office before the meeting tomorrow. "
           "The weather is nice today, so we will walk to the station after lunch. "
           "My sister bought a new bicycle and rides it to work every morning.")


@pytest.fixture(scope="module")
def passage_wav(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng to make speech")
    wav = speech.make_speech_wav(PASSAGE, tmp_path_factory.mktemp("passage") / "p.wav")
    assert speech.duration(wav) > 10.5  # long enough for the automatic progress bar
    return wav


@pytest.fixture(scope="module")
def browser_webm(passage_wav) -> bytes:
    """webm/opus as Chromium's MediaRecorder makes it: live (no duration, no cues), sent
    in ~120 ms chunks that the widget joins into ``rec.last_audio``."""
    data = speech.encode(passage_wav, "webm", options={"live": "1"})
    chunks = speech.chunks(data, speech.duration(passage_wav))
    assert len(chunks) > 50
    joined = b"".join(chunks)
    with av.open(io.BytesIO(joined)) as c:
        assert c.duration is None
    return joined


def silent_wav(path, seconds: float, rate: int = 16000):
    write_pcm_wav(path, bytes(int(seconds * rate) * 2), rate)
    return path


def open_bars() -> list[object]:
    return list(getattr(tqdm, "_instances", ()))


# -- the recording -------------------------------------------------------------------


@needs_espeak
def test_browser_webm_decodes_to_the_speech_duration(passage_wav, browser_webm):
    audio = decode_bytes(browser_webm)
    assert abs(len(audio) / 16000 - speech.duration(passage_wav)) <= 0.020
    assert 0.01 < float(np.sqrt(np.mean(audio**2))) < 1.0  # speech, not silence


@needs_espeak
def test_chunk_decoder_on_browser_chunks_matches_the_whole(passage_wav, browser_webm):
    parts: list[np.ndarray] = []
    dec = ChunkDecoder(parts.append)
    for chunk in speech.chunks(browser_webm, speech.duration(passage_wav)):
        dec.feed(chunk)
    dec.close()
    assert dec.error is None and not dec.alive
    np.testing.assert_array_equal(np.concatenate(parts), decode_bytes(browser_webm))


@needs_espeak
def test_browser_webm_written_as_recorded_and_as_wav(tmp_path, passage_wav, browser_webm):
    assert write_audio(browser_webm, tmp_path / "take.webm").read_bytes() == browser_webm
    path = write_audio(browser_webm, tmp_path / "take.wav")
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        assert abs(w.getnframes() / 48000 - speech.duration(passage_wav)) <= 0.020


# -- progress ------------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize("kind", ["wav", "live webm", "unreadable"])
def test_a_long_file_shows_a_progress_bar_and_closes_it(tmp_path, capsys, passage_wav,
                                                        browser_webm, kind):
    seconds = speech.duration(passage_wav)
    if kind == "wav":
        path, unit = passage_wav, f"{seconds:.1f}/{seconds:.1f} s of audio"
    elif kind == "live webm":  # no duration in its header: its packets tell it
        path, unit = tmp_path / "take.webm", f"/{seconds:.1f} s of audio"
        path.write_bytes(browser_webm)
    else:  # no duration to be had: the bar counts bytes
        path, unit = tmp_path / "take.raw", "B/s"
        path.write_bytes(bytes(200_000))
    engine = ScriptedEngine(bytes_per_word=20_000)
    with LocalSonioxServer(engine) as server:
        t = transcribe_file(path, url=server.url, realtime=False, progress=True)
    assert t.final_text == engine.text_for(path.read_bytes())
    err = capsys.readouterr().err
    assert path.name in err and "100%" in err and unit in err
    assert err.endswith("\n")  # closed, left in place
    assert not open_bars()


def test_automatic_progress_is_off_for_short_files_and_can_be_turned_off(tmp_path, capsys):
    short = silent_wav(tmp_path / "short.wav", 2.0)
    long = silent_wav(tmp_path / "long.wav", 11.0)
    engine = ScriptedEngine(bytes_per_word=20_000)
    with LocalSonioxServer(engine) as server:
        transcribe_file(short, url=server.url, realtime=False)
        assert capsys.readouterr().err == ""
        transcribe_file(long, url=server.url, realtime=False, progress=False)
        assert capsys.readouterr().err == ""
        transcribe_file(long, url=server.url, realtime=False)  # auto: on
        assert "100%" in capsys.readouterr().err
    assert not open_bars()


def test_the_bar_is_closed_when_the_session_fails(tmp_path, capsys):
    wav = silent_wav(tmp_path / "fails.wav", 11.0)
    engine = ScriptedEngine(bytes_per_word=1000, fail_after_bytes=50_000)
    with LocalSonioxServer(engine) as server, pytest.raises(SonioxError):
        transcribe_file(wav, url=server.url, realtime=False, reconnect=NO_RECONNECT)
    err = capsys.readouterr().err
    assert "fails.wav" in err and err.endswith("\n")
    assert not open_bars()


async def test_paced_chunks_reports_the_bytes_sent():
    data = bytes(50_000)
    seen: list[int] = []
    pieces = [p async for p in paced_chunks(data, 5.0, False, on_progress=seen.append)]
    assert len(pieces) == len(seen) > 10
    assert seen == sorted(seen) and seen[-1] == len(data)
    assert seen == list(np.cumsum([len(p) for p in pieces]))


async def test_paced_chunks_reports_after_a_piece_is_taken_not_before():
    seen: list[int] = []
    gen = paced_chunks(bytes(20_000), 1.0, False, on_progress=seen.append)
    first = await gen.__anext__()
    assert seen == []  # handed out, not yet sent
    await gen.__anext__()
    assert seen == [len(first)]
    await gen.aclose()
    await asyncio.sleep(0)


async def test_a_browser_recording_is_paced_by_its_audio_not_its_bytes(tmp_path):
    """MediaRecorder's webm/opus has no duration in its header; paced as 128 kb/s audio,
    a 10 s recording at 32 kb/s went by in 4.2 s (issue 23). Its packets tell the
    duration, and the file then takes as long as it plays."""
    from soniox_widget.headless import audio_duration, read_audio_file
    from tests import human_speech

    clip, = human_speech.clips("ill_disposed_twice")
    recording = tmp_path / "take.webm"
    recording.write_bytes(speech.encode(clip.path, options={"live": "1"}))  # no duration
    with av.open(str(recording)) as f:
        assert f.duration is None
    assert audio_duration(recording) == pytest.approx(clip.seconds, abs=0.05)
    data, seconds = await read_audio_file(recording)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async for _piece in paced_chunks(data, seconds, True):
        pass
    # A lower bound only: the pieces are never sent faster than the audio plays.
    assert loop.time() - began >= clip.seconds - 0.2
