"""faster-whisper decoding sized to the audio: one encoder pass over what is there.

Whisper's encoder is trained on 30 s windows, and faster-whisper pads every decode to
one, so a decode of 3 s of audio costs as much as one of 30 s (measured on 2 cores,
tiny.en int8: the encoder takes 0.35 s for 3000 frames, 0.03 s for the 500 frames of
5 s). CTranslate2's encoder accepts fewer frames, and Whisper still transcribes them
(word error rate on the benchmark passages: 0.102 full window, 0.106 sized to the
audio), so :class:`WindowedWhisper` cuts the padding off before the encoder runs. Not all
of it: on windows of 1-2 s Whisper tends to loop ("please, please, please, ..." up to its
448-token limit, 10-20 s of decoding), so the engine keeps 1 s of padding and a window of
at least 5 s, and bounds the tokens per decode.

It also decodes **one window** per call while streaming. After the first window,
faster-whisper decodes again from the last word's end, i.e. the audio Whisper did not
transcribe: mostly the trailing pause or noise of the buffer. That second pass doubled
the cost of every streaming step and is where Whisper invents its classic "Thank you."
after the speaker stops. A stream re-decodes its buffer at the next step anyway; only a
flush (finalize, end of stream) lets faster-whisper go on over the whole buffer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAMES_PER_SECOND = 100  # Whisper's log-mel frames (10 ms hop)
FULL_WINDOW_FRAMES = 3000


@dataclass(frozen=True)
class DecodedWord:
    """A word as Whisper timed it, in seconds from the start of the decoded audio."""

    text: str
    start: float
    end: float
    probability: float


class _OneWindowDone(Exception):
    """Raised by the encoder when a one-window decode asks for a second window."""


@dataclass
class _Call:
    frames: int          # encoder frames to keep (content plus padding)
    one_window: bool
    windows: int = 0


def _windowed_class() -> type:
    from faster_whisper import WhisperModel

    class Windowed(WhisperModel):
        # Per thread: CTranslate2 may run several decodes at once (num_workers > 1).
        _calls = threading.local()

        def encode(self, features: np.ndarray) -> Any:
            call: _Call | None = getattr(self._calls, "call", None)
            if call is not None:
                if call.one_window and call.windows:
                    raise _OneWindowDone
                call.windows += 1
                if features.shape[-1] > call.frames:
                    features = np.ascontiguousarray(features[..., : call.frames])
            return super().encode(features)

    return Windowed


class WindowedWhisper:
    """A faster-whisper model that decodes the audio it is given, not a 30 s window.

    Example::

        model = WindowedWhisper("/path/to/ctranslate2-whisper", cpu_threads=2)
        words = model.transcribe(samples_16k, beam_size=1)
    """

    def __init__(self, model_path: str, *, cpu_threads: int, num_workers: int = 1) -> None:
        self._model = _windowed_class()(model_path, device="cpu", compute_type="int8",
                                        cpu_threads=cpu_threads, num_workers=num_workers,
                                        local_files_only=True)

    def transcribe(self, audio: np.ndarray, *, beam_size: int, prompt: str = "",
                   pad_s: float | None = 0.0, one_window: bool = True,
                   min_window_s: float = 0.0, max_new_tokens: int | None = None,
                   fallback: bool = True) -> list[DecodedWord]:
        """Words in ``audio`` (16 kHz float32 mono).

        Args:
            pad_s: seconds of padding the encoder sees after the audio; ``None`` for
                Whisper's full 30 s window (faster-whisper's own behaviour).
            min_window_s: the shortest window the encoder sees, padding included.
            max_new_tokens: a bound on the tokens decoded per window.
            fallback: retry at higher temperatures when a decode looks wrong
                (faster-whisper's default); False decodes once, greedily or by beam.
            one_window: decode one window only (streaming steps); False lets
                faster-whisper continue after the last word it found (a flush).
            prompt: text said before ``audio``, as context (never text inside it:
                Whisper would skip audio it thinks it has already transcribed).
        """
        seconds = len(audio) / 16_000
        frames = FULL_WINDOW_FRAMES if pad_s is None else min(
            FULL_WINDOW_FRAMES, int(max(seconds + pad_s, min_window_s) * FRAMES_PER_SECOND) + 1)
        calls = self._model._calls
        calls.call = _Call(frames, one_window)
        words: list[DecodedWord] = []
        try:
            segments, _info = self._model.transcribe(
                audio, language="en", beam_size=beam_size, word_timestamps=True,
                initial_prompt=prompt or None, condition_on_previous_text=False,
                vad_filter=False, without_timestamps=False, max_new_tokens=max_new_tokens,
                **({} if fallback else {"temperature": 0.0}))
            for segment in segments:
                words.extend(DecodedWord(w.word, w.start, w.end, w.probability)
                             for w in segment.words or () if w.word.strip())
        except _OneWindowDone:
            pass  # the words of the first window are all in
        finally:
            calls.call = None
        return words
