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
