"""Speech for tests, made at test time by espeak-ng from known text (nothing downloaded)."""

from __future__ import annotations

import re
import subprocess
import wave
from pathlib import Path

import numpy as np


def make_speech_wav(text: str, path: str | Path, voice: str = "en-us", wpm: int = 150,
                    sample_rate: int = 48000, lead_silence_s: float = 0.5,
                    tail_silence_s: float = 1.0) -> Path:
    """Speak ``text`` with espeak-ng into a mono 16-bit WAV at ``sample_rate``."""
    path = Path(path)
    raw = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         check=True, capture_output=True, timeout=60).stdout
    samples, rate = _read_wav_bytes(raw)
    if rate != sample_rate:  # linear resampling is plenty for synthetic speech
        n = int(len(samples) * sample_rate / rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)),
                            samples).astype(np.int16)
    pad = lambda s: np.zeros(int(s * sample_rate), dtype=np.int16)  # noqa: E731
    audio = np.concatenate([pad(lead_silence_s), samples, pad(tail_silence_s)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(audio.astype("<i2").tobytes())
    return path


def write_wav(path: str | Path, frames: bytes, rate: int = 16000) -> Path:
    """``frames`` (16-bit mono samples) as a WAV file: a container wrapped around known PCM."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return Path(path)


def _read_wav_bytes(raw: bytes) -> tuple[np.ndarray, int]:
    # espeak-ng's --stdout WAV has unknown (0xFFFFFFFF) sizes; take the data after the header.
    rate = int.from_bytes(raw[24:28], "little")
    idx = raw.find(b"data")
    data = raw[idx + 8 :] if idx >= 0 else raw[44:]
    data = data[: len(data) // 2 * 2]
    return np.frombuffer(data, dtype="<i2").copy(), rate


def normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length (case and punctuation ignored)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


def encode(wav: str | Path, fmt: str = "webm", codec: str = "libopus",
           bit_rate: int = 32000, rate: int = 48000,
           options: dict[str, str] | None = None) -> bytes:
    """Encode a WAV like a recorder would: webm/opus at 48 kHz by default (Chromium's
    MediaRecorder); also ogg/opus, fragmented mp4/aac, mp3, flac."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options or {}) as out, \
            av.open(str(wav)) as inp:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if codec != "flac":
            stream.bit_rate = bit_rate
        sample_format = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            frame.pts = None
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def chunks(data: bytes, seconds: float, chunk_s: float = 0.12) -> list[bytes]:
    """Split encoded audio into pieces of about ``chunk_s`` of audio each (MediaRecorder-like)."""
    n = max(1, round(seconds / chunk_s))
    size = max(1, -(-len(data) // n))
    return [data[i : i + size] for i in range(0, len(data), size)]


def pcm16(wav: str | Path) -> tuple[bytes, int]:
    """The samples of a mono 16-bit WAV, and its rate."""
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def duration(wav: str | Path) -> float:
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()
