"""The loudness detector that finds the speech Silero VAD misses (whispers, falsetto)."""

from __future__ import annotations

import numpy as np

from soniox_widget.local.loudness import LoudnessDetector, merged
from tests import noise

RATE = 16_000


def whisper_like(seconds: float, dbfs: float, seed: int = 3) -> np.ndarray:
    """Noise shaped into syllables (4 per second), as whispered speech is: no voicing."""
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return noise.at_dbfs(noise.pink_noise(seconds, RATE, -20.0, seed) * envelope, dbfs)


def test_a_whisper_above_the_room_is_found():
    room = noise.room_tone(3.0, RATE, -80.0)
    talk = room[: 2 * RATE] + whisper_like(2.0, -50.0)
    audio = np.concatenate([room, talk, room]).astype(np.float32)
    loud = LoudnessDetector()
    loud.hear(audio)
    spans = loud.spans(audio)
    assert len(spans) == 1, spans
    start, end = spans[0]
    assert abs(start - 3.0) < 0.15 and abs(end - 5.0) < 0.15, spans


def test_steady_noise_is_its_own_floor_however_loud():
    for sound in (noise.pink_noise(4.0, RATE, -25.0), noise.room_tone(4.0, RATE, -25.0)):
        loud = LoudnessDetector()
        loud.hear(sound.astype(np.float32))
        assert loud.spans(sound.astype(np.float32)) == []


def test_a_click_is_not_speech():
    room = noise.room_tone(3.0, RATE, -70.0)
    audio = room.copy()
    audio[RATE : RATE + RATE // 5] += noise.pink_noise(0.2, RATE, -30.0)  # 0.2 s knock
    loud = LoudnessDetector()
    loud.hear(audio.astype(np.float32))
    assert loud.spans(audio.astype(np.float32)) == []


def test_no_floor_before_a_second_and_digital_silence_has_one():
    loud = LoudnessDetector()
    loud.hear(np.zeros(RATE // 2, np.float32))
    assert loud.floor_db is None
    assert loud.spans(np.ones(RATE, np.float32)) == []
    loud.hear(np.zeros(RATE, np.float32))
    # Digital silence measures nothing: the floor is taken as the quietest room.
    assert loud.floor_db == -75.0


def test_audio_heard_in_any_pieces_gives_the_same_floor():
    audio = np.concatenate([noise.room_tone(2.0, RATE, -60.0),
                            whisper_like(1.0, -30.0)]).astype(np.float32)
    whole, pieces = LoudnessDetector(), LoudnessDetector()
    whole.hear(audio)
    for i in range(0, len(audio), 1234):
        pieces.hear(audio[i : i + 1234])
    assert whole.floor_db == pieces.floor_db


def test_merged_spans():
    assert merged([(0.0, 1.0), (2.0, 3.0)], [(0.5, 1.5), (4.0, 5.0)]) == [
        (0.0, 1.5), (2.0, 3.0), (4.0, 5.0)]
    assert merged([], []) == []
