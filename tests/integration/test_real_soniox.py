"""Against the real Soniox service: runs only when SONIOX_API_KEY is set."""

import os
from pathlib import Path

import pytest

from soniox_widget import SonioxError, UpstreamSession, transcribe_file_async

pytestmark = [
    pytest.mark.soniox,
    pytest.mark.skipif(not os.environ.get("SONIOX_API_KEY"), reason="needs SONIOX_API_KEY"),
]
SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "sample.wav"


async def test_sample_file_is_transcribed_by_soniox():
    t = await transcribe_file_async(SAMPLE, engine="soniox", language_hints=["en"],
                                    enable_endpoint_detection=True)
    words = t.final_text.lower()
    assert "report" in words and "meeting" in words, t.final_text
    assert t.final_tokens[0].start_ms is not None


async def test_a_bad_key_is_refused_with_401():
    with pytest.raises(SonioxError) as info:
        async with UpstreamSession(api_key="not-a-valid-key") as session:
            session.send_audio(SAMPLE.read_bytes()[:32000])
            session.end()
            async for _ in session.replies():
                pass
    assert info.value.error_code == 401
    assert "not-a-valid-key" not in str(info.value)
