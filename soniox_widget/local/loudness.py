"""Speech that Silero VAD does not hear, found by loudness over the stream's noise floor.

Silero VAD is trained on ordinary voiced speech. Whispered speech (no voicing at all) and
falsetto are nearly invisible to it: on the clip of two whispered and two falsetto
sentences it heard 0.3 s of speech in 20 s, so the live engine never decoded them and
whole sentences were lost, while Whisper, decoding the file, writes them all (issue 23).
A person speaking is still louder than the room: this finds stretches well above the
stream's own noise floor, and the engine treats them as speech too.

Steady noise, however loud, is its own floor and is never speech here; that is what keeps
Whisper from decoding pink noise or room tone into "you". The floor is a low percentile of
the last ``history_s`` of frame levels, so it follows a room that gets louder or quieter.
"""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

SAMPLE_RATE = 16_000


class LoudnessDetector:
    """Stretches of a stream that are ``margin_db`` above its noise floor.

    Feed every sample once, in order (:meth:`hear`); ask for the spans of any recent
    audio (:meth:`spans`). Example::

        loud = LoudnessDetector()
        loud.hear(samples)
        loud.spans(samples)   # [(0.61, 2.48), ...] seconds from samples[0]
    """

    def __init__(self, *, frame_s: float = 0.02, margin_db: float = 15.0,
                 quietest_floor_db: float = -75.0, history_s: float = 20.0,
                 min_s: float = 0.5, join_s: float = 0.3, pad_s: float = 0.1) -> None:
        """``quietest_floor_db``: the floor is taken as at least this (a recording joined
        with digital silence has no floor to measure); ``min_s``: shorter loud stretches
        (a click, a knock) are not speech; ``join_s``: loud stretches this close are one;
        ``pad_s``: added at both ends, as Silero's spans are padded."""
        self.frame = max(1, round(frame_s * SAMPLE_RATE))
        self.margin_db = margin_db
        self.quietest_floor_db = quietest_floor_db
        self.min_s, self.join_s, self.pad_s = min_s, join_s, pad_s
        self._levels: deque[float] = deque(maxlen=max(1, round(history_s / frame_s)))
        self._rest = np.zeros(0, np.float32)

    def hear(self, samples: np.ndarray) -> None:
        """Add the level of each whole frame of ``samples`` to the floor's history."""
        audio = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        whole = len(audio) // self.frame * self.frame
        self._levels.extend(_levels(audio[:whole], self.frame))
        self._rest = np.array(audio[whole:], np.float32)

    @property
    def floor_db(self) -> float | None:
        """The noise floor (dBFS), or None before a second of audio is heard."""
        if len(self._levels) * self.frame < SAMPLE_RATE:
            return None
        return max(self.quietest_floor_db, float(np.percentile(self._levels, 10)))

    def spans(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Loud stretches of ``audio`` (seconds from its start), padded and joined."""
        floor = self.floor_db
        if floor is None or len(audio) < self.frame:
            return []
        loud = _levels(audio[: len(audio) // self.frame * self.frame], self.frame) >= (
            floor + self.margin_db)
        frame_s = self.frame / SAMPLE_RATE
        runs: list[tuple[float, float]] = []
        at = 0
        for is_loud, group in itertools.groupby(loud):
            n = len(list(group))
            if is_loud:
                start, end = at * frame_s, (at + n) * frame_s
                if runs and start - runs[-1][1] <= self.join_s:
                    runs[-1] = (runs[-1][0], end)
                else:
                    runs.append((start, end))
            at += n
        seconds = len(audio) / SAMPLE_RATE
        return [(max(0.0, a - self.pad_s), min(seconds, b + self.pad_s))
                for a, b in runs if b - a >= self.min_s]


def _levels(audio: np.ndarray, frame: int) -> np.ndarray:
    """RMS level (dBFS, at least -120) of each frame of ``audio`` (a whole number of them)."""
    if not len(audio):
        return np.zeros(0)
    power = np.mean(np.square(audio.reshape(-1, frame), dtype=np.float64), axis=1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def merged(*span_lists: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of several lists of spans, in order, overlapping spans made one."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(itertools.chain(*span_lists)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
