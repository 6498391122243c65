"""The streaming policy of the offline engine with a stand-in recogniser (no model run).

Whisper and the VAD are replaced by fixed answers so the cases where their outputs meet
the step/pause logic can be set up exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from soniox_widget import SonioxConfig
from soniox_widget.local import local_engine_available
from soniox_widget.local.agreement import Word

pytestmark = pytest.mark.skipif(not local_engine_available(),
                                reason="needs soniox-widget[local]")

SR = 16_000


def stand_in_engine(spans, words):
    from soniox_widget.local.whisper_engine import WhisperEngine

    class StandIn(WhisperEngine):
        def speech_spans(self, audio):
            return list(spans)

        def transcribe(self, audio, offset, prompt, beam_size=None):
            end = offset + len(audio) / SR
            return [w for w in words if w.end <= end]

    return StandIn()


async def recognise(spans, words, seconds: float):
    from soniox_widget.local.whisper_engine import WhisperStream

    engine = stand_in_engine(spans, words)
    cfg = SonioxConfig(audio_format="pcm_s16le", sample_rate=SR, num_channels=1,
                       enable_endpoint_detection=True)
    stream = WhisperStream(engine, cfg)
    try:
        stream.buffer = np.zeros(round(seconds * SR), dtype=np.float32)
        update, left = stream._recognise("step")
        return stream, update, left
    finally:
        await stream.aclose()
        await engine.aclose()


async def test_a_pause_inside_a_step_ends_the_utterance_there():
    words = [Word(" one", 0.1, 0.9), Word(" two", 2.0, 2.8)]
    stream, update, left = await recognise([(0.1, 1.0), (1.9, 2.9)], words, 3.0)
    texts = [t.text for t in update.final]
    assert texts == ["one", "<end>"]                 # "two" waits for the next step
    assert stream.buffer_start == pytest.approx(1.8, abs=1e-3)
    assert left == round(1.2 * SR)


async def test_a_pause_that_ends_within_a_sample_still_makes_progress():
    # The next speech starts a hair before the point where the pause is noticed: the
    # decode must still cut the buffer there, or the same pause is found again forever.
    speech_end = 1.00001                 # the noticing point rounds up to the next sample:
    again = speech_end + 0.8 + 0.00002   # 1.8000625 s, and speech resumes just before it
    words = [Word(" one", 0.1, 0.9)]
    stream, update, _ = await recognise([(0.1, speech_end), (again, 2.9)], words, 3.0)
    assert [t.text for t in update.final] == ["one", "<end>"]
    assert stream.buffer_start > 1.7
