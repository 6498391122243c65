"""The transcoder that resumes compressed audio after a drop, on real webm/opus."""

from __future__ import annotations

import asyncio

import pytest

from soniox_widget.session.transcode import PcmTranscoder


@pytest.fixture(scope="module")
def webm(tmp_path_factory) -> bytes:
    from tests.speech import encode, make_speech_wav

    wav = make_speech_wav("Please send the report to my office before the meeting.",
                          tmp_path_factory.mktemp("tc") / "s.wav")
    return encode(wav)


async def test_a_finalize_mark_comes_out_after_its_audio_even_if_no_more_audio_comes(webm):
    """Regression: a mark waited for a packet after it, so a finalize while paused was
    held until the source resumed."""
    loop = asyncio.get_running_loop()
    events: list[object] = []
    marked, ended = asyncio.Event(), asyncio.Event()
    transcoder = PcmTranscoder(
        loop, skip_ms=500, on_pcm=lambda pcm: events.append(len(pcm)),
        on_mark=lambda m: (events.append(m), marked.set()), on_end=lambda e: ended.set())
    try:
        transcoder.feed(webm[: len(webm) * 2 // 3])
        transcoder.mark("finalize")
        await asyncio.wait_for(marked.wait(), 10)  # no more audio was fed
        before = sum(e for e in events if isinstance(e, int)) / 32000
        transcoder.feed(webm[len(webm) * 2 // 3 :])
        transcoder.close_input()
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        transcoder.abort()
    total = sum(e for e in events if isinstance(e, int)) / 32000
    assert events.count("finalize") == 1
    assert 0.5 * total < before < total  # the audio before the mark came out first
    assert all(isinstance(e, int) for e in events[events.index("finalize") + 1 :])
