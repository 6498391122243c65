"""Low-level noise for tests and benchmarks: pink noise and a synthetic room tone.

Whisper is known to invent words ("Thank you.") over what follows speech when it is
not digital silence; these are the quiet, steady sounds a real microphone hears then.
Seeded, so a test hears the same noise every run.
"""

from __future__ import annotations

import numpy as np


def _shaped(seconds: float, rate: int, exponent: float, seed: int) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    n = max(1, round(seconds * rate))
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    f[0] = f[1] if n > 1 else 1.0
    out = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return out / (np.sqrt(np.mean(out**2)) or 1.0)


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS level of ``dbfs`` (0 dBFS = RMS 1.0)."""
    rms = np.sqrt(np.mean(x**2)) or 1.0
    return x * (10 ** (dbfs / 20) / rms)


def pink_noise(seconds: float, rate: int = 48000, dbfs: float = -45.0,
               seed: int = 1) -> np.ndarray:
    """Pink noise (equal power per octave) as float samples, RMS ``dbfs``."""
    return at_dbfs(_shaped(seconds, rate, 1.0, seed), dbfs)


def room_tone(seconds: float, rate: int = 48000, dbfs: float = -48.0,
              seed: int = 2) -> np.ndarray:
    """A quiet room: rumble (brown noise), mains hum at 50 Hz and 100 Hz, and hiss."""
    t = np.arange(max(1, round(seconds * rate))) / rate
    rumble = at_dbfs(_shaped(seconds, rate, 2.0, seed), -50.0)
    hum = 10 ** (-56 / 20) * np.sqrt(2) * (np.sin(2 * np.pi * 50 * t)
                                           + 0.5 * np.sin(2 * np.pi * 100 * t + 1.0))
    hiss = at_dbfs(_shaped(seconds, rate, 0.0, seed + 1), -62.0)
    return at_dbfs(rumble + hum + hiss, dbfs)


def int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def speech_then(pcm: bytes, noise: np.ndarray) -> bytes:
    """16-bit PCM speech followed by silence as long as ``noise`` is beyond it, with
    ``noise`` (floats, the length of the whole result) under all of it, as a real
    microphone hears a room: the same sound before, under and after the speech."""
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    total = np.zeros(max(len(speech), len(noise)))
    total[: len(speech)] += speech
    total[: len(noise)] += noise
    return int16(total).astype("<i2").tobytes()
