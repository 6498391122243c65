"""faster-whisper decoding at the cost of the audio there is, in the window Whisper knows.

Whisper's encoder is trained on 30 s windows, and faster-whisper encodes one for every
decode, so a decode of 3 s of audio costs as much as one of 30 s (measured on 2 cores,
tiny.en int8: the encoder takes 0.35-0.55 s for 3000 frames, 0.015 s for the 500
frames of 5 s). :class:`WindowedWhisper` encodes only the audio and a little padding,
then hands the decoder a full window anyway: the encoder states of a silent 30 s window
(computed once per model) stand in for the rest. The decoder therefore always sees the
1500 positions it was trained on, with silence after the speech.

Why not just the short window: given encoder states that end a second after the speech,
Whisper's decoder loses its place and loops back over the audio ("I'm originally from
Chicago. I'm originally from Chicago. ...", "it was the age of the age of ..."). On
real human speech streamed live that made 0.9-1.5 errors per word where the whole-file
decode made 0.02 (issue 23); windows of 20 s or more stopped the loops but cost nearly
a full encode. With the silent tail the live transcript matches the full-window one at
the short window's cost.

A decode can also be given a ``prefix``: words already made final whose audio is still
at the start of ``audio``. Whisper is made to start with them (forced decoding), so it
re-times them against the audio and transcribes only what follows: no guessing, from
timestamps, which part of a fresh decode was already sent.

It decodes **one window** per call while streaming: after the first window,
faster-whisper would decode again from the last word's end (mostly the trailing pause
of the buffer, where Whisper invents its classic "Thank you."). Only a flush (finalize,
end of stream) lets faster-whisper go on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAMES_PER_SECOND = 100  # Whisper's log-mel frames (10 ms hop)
FULL_WINDOW_FRAMES = 3000
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class DecodedWord:
    """A word as Whisper timed it, in seconds from the start of the decoded audio."""

    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Decoded:
    """One decode: the prefix words as re-timed against the audio, then the new words."""

    prefix: list[DecodedWord]
    words: list[DecodedWord]


class _OneWindowDone(Exception):
    """Raised by the encoder when a one-window decode asks for a second window."""


@dataclass
class _Call:
    frames: int          # encoder frames to keep (content plus padding)
    one_window: bool
    windows: int = 0


def _windowed_class() -> type:
    import ctranslate2
    from faster_whisper import WhisperModel

    class Windowed(WhisperModel):
        # Per thread: CTranslate2 may run several decodes at once (num_workers > 1).
        _calls = threading.local()
        _silence: np.ndarray | None = None
        _silence_lock = threading.Lock()

        def silent_window(self) -> np.ndarray:
            """Encoder states of 30 s of silence, [1, 1500, d_model] (computed once)."""
            with self._silence_lock:
                if self._silence is None:
                    features = self.feature_extractor(
                        np.zeros(SAMPLE_RATE * 30, np.float32))[:, :FULL_WINDOW_FRAMES]
                    states = WhisperModel.encode(self, np.ascontiguousarray(features[None]))
                    self._silence = np.array(states)
                return self._silence

        def encode(self, features: np.ndarray) -> Any:
            call: _Call | None = getattr(self._calls, "call", None)
            if call is None:
                return super().encode(features)
            if call.one_window and call.windows:
                raise _OneWindowDone
            call.windows += 1
            if call.frames >= FULL_WINDOW_FRAMES:
                return super().encode(features)
            silence = self.silent_window()
            states = np.array(super().encode(
                np.ascontiguousarray(features[..., : call.frames])))
            n = states.shape[1]
            full = np.concatenate([states, silence[:, n:]], axis=1)
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(full))

    return Windowed


class WindowedWhisper:
    """A faster-whisper model that encodes the audio it is given, not a 30 s window.

    Example::

        model = WindowedWhisper("/path/to/ctranslate2-whisper", cpu_threads=2)
        decoded = model.transcribe(samples_16k, beam_size=1)
        print("".join(w.text for w in decoded.words))
    """

    def __init__(self, model_path: str, *, cpu_threads: int, num_workers: int = 1) -> None:
        self._model = _windowed_class()(model_path, device="cpu", compute_type="int8",
                                        cpu_threads=cpu_threads, num_workers=num_workers,
                                        local_files_only=True)
        self._model.silent_window()  # at load time, not in the first decode

    def transcribe(self, audio: np.ndarray, *, beam_size: int, prompt: str = "",
                   prefix: str = "", pad_s: float | None = 0.0, one_window: bool = True,
                   max_new_tokens: int | None = None, fallback: bool = True) -> Decoded:
        """Words in ``audio`` (16 kHz float32 mono).

        Args:
            prompt: text said before ``audio``, as context (never text inside it:
                Whisper would skip audio it thinks it has already transcribed).
            prefix: text said at the start of ``audio``, already known: Whisper is made
                to start with it, and its words come back in ``Decoded.prefix``.
            pad_s: seconds of padding encoded after the audio (the rest of the window is
                the silent window's); ``None`` encodes Whisper's full 30 s window.
            max_new_tokens: a bound on the tokens decoded per window.
            fallback: retry at higher temperatures when a decode looks wrong
                (faster-whisper's default); False decodes once, greedily or by beam.
            one_window: decode one window only (streaming steps); False lets
                faster-whisper continue after the last word it found (a flush).
        """
        seconds = len(audio) / SAMPLE_RATE
        frames = FULL_WINDOW_FRAMES if pad_s is None else min(
            FULL_WINDOW_FRAMES, int((seconds + pad_s) * FRAMES_PER_SECOND) + 1)
        calls = self._model._calls
        calls.call = _Call(frames, one_window)
        words: list[DecodedWord] = []
        prefix = prefix.strip()
        try:
            segments, _info = self._model.transcribe(
                audio, language="en", beam_size=beam_size, word_timestamps=True,
                initial_prompt=prompt or None, prefix=prefix or None,
                condition_on_previous_text=False, vad_filter=False,
                without_timestamps=False, max_new_tokens=max_new_tokens,
                **({} if fallback else {"temperature": 0.0}))
            for segment in segments:
                words.extend(DecodedWord(w.word, w.start, w.end, w.probability)
                             for w in segment.words or () if w.word.strip())
        except _OneWindowDone:
            pass  # the words of the first window are all in
        finally:
            calls.call = None
        return split_prefix(words, prefix)


def split_prefix(words: list[DecodedWord], prefix: str) -> Decoded:
    """Split a decode that was made to start with ``prefix`` into its two parts.

    faster-whisper returns the prefix's words like any others. They are the leading
    words whose text adds up to the prefix; a word that runs past it (the decoder
    appended punctuation to the prefix's last word) still counts as the prefix's.
    """
    if not prefix:
        return Decoded([], words)
    want = len(prefix.replace(" ", ""))
    have = 0
    for i, w in enumerate(words):
        if have >= want:
            return Decoded(words[:i], words[i:])
        have += len(w.text.replace(" ", ""))
    return Decoded(words, [])
