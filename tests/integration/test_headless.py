"""transcribe_file from a script and from inside a running event loop (a notebook cell)."""

import asyncio

import pytest

from soniox_widget import ConfigError, SonioxError, transcribe_file, transcribe_file_async
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from tests.speech import write_wav as write_pcm_wav


def write_wav(path, seconds=1.0, rate=16000):
    write_pcm_wav(path, bytes(int(seconds * rate) * 2), rate)
    return path


async def test_async_file_through_the_local_server(local_server, engine, tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    t = await transcribe_file_async(wav, url=local_server.url, language_hints=["en"])
    assert t.final_text == engine.text_for(wav.read_bytes())
    assert local_server.sessions[0].audio_bytes == wav.stat().st_size
    assert local_server.sessions[0].start_message["language_hints"] == ["en"]


async def test_realtime_pacing_is_used_when_asked(local_server, tmp_path):
    wav = write_wav(tmp_path / "a.wav", seconds=0.6)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await transcribe_file_async(wav, url=local_server.url, realtime=True)
    # Structural, not a speed target: pacing must at least wait for the audio's length.
    assert loop.time() - began >= 0.5


def test_blocking_call_from_a_plain_script(tmp_path):
    engine = ScriptedEngine(bytes_per_word=1000)
    wav = write_wav(tmp_path / "b.wav")
    with LocalSonioxServer(engine) as server:
        t = transcribe_file(wav, url=server.url)
    assert t.final_text == engine.text_for(wav.read_bytes())


async def test_blocking_call_inside_a_running_loop_like_a_notebook_cell(tmp_path):
    engine = ScriptedEngine(bytes_per_word=1000)
    wav = write_wav(tmp_path / "c.wav")
    with LocalSonioxServer(engine) as server:
        t = transcribe_file(wav, url=server.url)  # a loop runs here: must not deadlock
    assert t.final_text == engine.text_for(wav.read_bytes())


async def test_bad_inputs(local_server, tmp_path):
    with pytest.raises(FileNotFoundError, match="check the path"):
        await transcribe_file_async(tmp_path / "nope.wav", url=local_server.url)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        await transcribe_file_async(tmp_path / "empty.wav", url=local_server.url)
    with pytest.raises(ConfigError, match="unknown option"):
        await transcribe_file_async(tmp_path / "empty.wav", url=local_server.url, langauge="en")


async def test_upstream_error_is_raised(tmp_path):
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=2000)
    wav = write_wav(tmp_path / "d.wav")
    async with LocalSonioxServer(engine) as server:
        with pytest.raises(SonioxError) as info:
            await transcribe_file_async(wav, url=server.url)
    assert info.value.error_code == 503


def says_words_then_fails(words: int, code: int = 500):
    """A stand-in that makes one word final per audio frame and, after ``words`` of
    them, answers with an error instead of ``finished`` (issue 22: the failure lost them)."""
    import json

    from tests import standin

    async def run(ws):
        await standin.read_start(ws)
        said = 0
        async for msg in ws:
            if isinstance(msg, bytes) and msg and said < words:
                said += 1
                await ws.send(json.dumps({"tokens": [
                    {"text": f" w{said}", "is_final": True, "start_ms": said * 10,
                     "end_ms": said * 10 + 5},
                    {"text": " maybe", "is_final": False}],
                    "final_audio_proc_ms": said * 10 + 5}))
            if said == words or msg == b"":
                await ws.send(json.dumps({"error_code": code, "error_message": "it broke"}))
                await ws.close()
                return
    return run


async def test_a_failed_transcription_hands_back_its_final_words(tmp_path):
    from soniox_widget.session import NO_RECONNECT
    from tests import standin

    wav = write_wav(tmp_path / "long.wav", seconds=15.0)  # ~150 frames
    async with standin.StandIn(says_words_then_fails(120)) as server:
        with pytest.raises(SonioxError) as info:
            await transcribe_file_async(wav, url=server.url, reconnect=NO_RECONNECT,
                                        audio_format="pcm_s16le", sample_rate=16000,
                                        num_channels=1)
    part = info.value.partial
    assert part is not None and info.value.error_code == 500
    assert part.final_text.split() == [f"w{i}" for i in range(1, 121)]
    assert part.nonfinal_text == ""          # the guess in flight is not kept
    assert part.final_audio_proc_ms == 1205  # the audio the final words cover


async def test_a_failed_recording_hands_back_its_final_words():
    from soniox_widget.recorder import SonioxRecorder
    from soniox_widget.session import NO_RECONNECT
    from tests import standin

    async with standin.StandIn(says_words_then_fails(30)) as server:
        rec = SonioxRecorder(url=server.url, reconnect=NO_RECONNECT,
                             audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
        try:
            with pytest.raises(SonioxError) as info:
                for _ in range(100):  # until feed raises the failure, which carries it too
                    rec.feed(bytes(640))
                    await asyncio.sleep(0.01)
            with pytest.raises(SonioxError) as waited:
                await rec.wait_until_idle(timeout=10)
        finally:
            rec.close()
    for error in (info.value, waited.value):
        assert error.partial is not None
        assert error.partial.final_text.split() == [f"w{i}" for i in range(1, 31)]
    assert rec.final_text.split() == [f"w{i}" for i in range(1, 31)]
