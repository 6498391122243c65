"""Audio bytes in any format the widget or a user sends → 16 kHz mono float32.

Container audio (the browser's streaming webm/opus, ogg, mp4/aac, wav, mp3, flac)
is decoded *incrementally* with PyAV as bytes arrive: FFmpeg reads from a blocking
file-like object fed by the socket, on a worker thread, so the event loop never
waits on it. Raw PCM is converted with NumPy and resampled with FFmpeg's
resampler (which filters out what would alias).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

_RAW_DTYPES = {
    "pcm_s8": "i1", "pcm_u8": "u1",
    "pcm_s16le": "<i2", "pcm_s16be": ">i2", "pcm_u16le": "<u2", "pcm_u16be": ">u2",
    "pcm_s32le": "<i4", "pcm_s32be": ">i4", "pcm_u32le": "<u4", "pcm_u32be": ">u4",
    "pcm_f32le": "<f4", "pcm_f32be": ">f4", "pcm_f64le": "<f8", "pcm_f64be": ">f8",
}


#: The raw formats this decoder reads (Soniox also takes mulaw, alaw and 24-bit PCM).
RAW_PCM_FORMATS = frozenset(_RAW_DTYPES)


class DecodeError(Exception):
    """The bytes are not audio in the declared format."""


class _StreamResampler:
    """Mono float32 from ``rate`` to ``target``, fed in pieces, with FFmpeg's resampler.

    libswresample low-passes before it decimates (a windowed-sinc filter), so a tone
    above the target's Nyquist frequency is removed instead of folding back into the
    band as aliasing (``np.interp`` folded it back). It is stateful: the output is the
    same however the input is cut, and about 1 ms of it is held back until
    :meth:`flush`.
    """

    def __init__(self, rate: int, target: int) -> None:
        self.rate = rate
        self.target = target
        self._resampler: Any = None

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self.rate == self.target or len(samples) == 0:
            return samples
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.target)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        return _joined(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The held-back tail; the next :meth:`push` starts a fresh stream."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        resampler, self._resampler = self._resampler, None
        return _joined(resampler.resample(None))


def _joined(frames: list[Any]) -> np.ndarray:
    parts = [f.to_ndarray().reshape(-1) for f in frames]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 ``samples`` at ``rate`` → float32 at ``target`` (anti-aliased)."""
    resampler = _StreamResampler(rate, target)
    head = resampler.push(samples)
    tail = resampler.flush()
    return np.concatenate([head, tail]) if len(tail) else head


class RawPCMDecoder:
    """Raw PCM of a known layout → mono float32 at ``target_rate``, fed in pieces.

    Keeps a partial frame between calls; the resampler holds back about 1 ms, which
    :meth:`flush` returns at the end of the stream.
    """

    def __init__(self, audio_format: str, sample_rate: int, num_channels: int,
                 target_rate: int = SAMPLE_RATE) -> None:
        if audio_format not in _RAW_DTYPES:
            raise DecodeError(
                f"audio_format {audio_format!r} is not supported by the offline engine; "
                f"use one of {', '.join(sorted(_RAW_DTYPES))} or a container format ('auto')"
            )
        if not sample_rate or sample_rate <= 0 or not num_channels or num_channels <= 0:
            raise DecodeError(
                f"raw audio needs a positive sample rate and channel count, got "
                f"sample_rate={sample_rate!r}, num_channels={num_channels!r}")
        self.dtype = np.dtype(_RAW_DTYPES[audio_format])
        self.rate = sample_rate
        self.channels = num_channels
        self.frame_bytes = self.dtype.itemsize * num_channels
        self.pending = b""
        self._resampler = _StreamResampler(sample_rate, target_rate)

    def frames(self, data: bytes) -> np.ndarray:
        """The whole frames in ``pending + data`` as a (frames, channels) float32 array
        in [-1, 1], at the source rate; an incomplete last frame waits for more."""
        data = self.pending + bytes(data)
        usable = len(data) - len(data) % self.frame_bytes
        self.pending = data[usable:]
        x = np.frombuffer(data[:usable], dtype=self.dtype).astype(np.float32)
        if self.dtype.kind == "u":
            x -= 2 ** (8 * self.dtype.itemsize - 1)
        if self.dtype.kind in "iu":
            x /= 2 ** (8 * self.dtype.itemsize - 1)
        return x.reshape(-1, self.channels)

    def decode(self, data: bytes) -> np.ndarray:
        frames = self.frames(data)
        mono = frames[:, 0] if self.channels == 1 else frames.mean(axis=1)
        return self._resampler.push(mono)

    def flush(self) -> np.ndarray:
        """The resampler's held-back tail (call once, when the stream ends)."""
        return self._resampler.flush()


class _FeedReader:
    """A blocking, non-seekable file object that FFmpeg reads while bytes are fed in.

    ``read(n)`` returns whatever is queued (up to n bytes), blocks only while nothing
    is, and returns ``b""`` after :meth:`close_input` once drained (end of file).
    """

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._eof = False
        self.bytes_in = 0

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self.bytes_in += len(data)
            self._cond.notify()

    def close_input(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._chunks.clear()
            self._eof = True
            self._cond.notify_all()

    def starved(self) -> bool:
        """True when a read would wait: everything fed so far has been read."""
        with self._cond:
            return not self._chunks and not self._eof

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()
            if not self._chunks:
                return b""
            if n is None or n < 0:
                out = b"".join(self._chunks)
                self._chunks.clear()
                return out
            head = self._chunks.popleft()
            if len(head) > n:
                self._chunks.appendleft(head[n:])
                head = head[:n]
            return head


class StreamingDecoder:
    """Decode container audio on a worker thread as it arrives.

    ``on_audio`` gets float32 16 kHz mono arrays in order; ``on_end`` is called once
    when the input is used up, with ``None`` or the :class:`DecodeError` that ended it.
    Both are called on the decoder's thread.
    """

    def __init__(self, on_audio: Callable[[np.ndarray], None],
                 on_end: Callable[[DecodeError | None], None],
                 container_format: str | None = None) -> None:
        self._on_audio = on_audio
        self._on_end = on_end
        self._format = None if container_format in (None, "auto") else container_format
        self._reader = _FeedReader()
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name="soniox-decoder", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def close_input(self) -> None:
        self._reader.close_input()

    def abort(self, timeout: float = 5.0) -> None:
        """Stop decoding now; returns when the thread has ended (bounded)."""
        self._aborted = True
        self._reader.abort()
        self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        import av

        error: DecodeError | None = None
        try:
            # FFmpeg's default probe reads up to 5 s of audio before the first frame
            # comes out (measured: 4.2 s for a WAV streamed at real time); 32 KB is
            # plenty to learn a stream's layout and keeps the start prompt (0.6 s).
            container = av.open(self._reader, mode="r", format=self._format,
                                options={"probesize": "32768"})
        except av.error.EOFError:
            container = None  # no bytes at all: nothing to decode, not an error
        except Exception as exc:
            container = None
            if self._reader.bytes_in and not self._aborted:
                error = DecodeError(_describe(exc, self._format))
        if container is not None:
            try:
                with container:
                    if not container.streams.audio:
                        raise DecodeError("the data has no audio stream")
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                    for frame in container.decode(audio=0):
                        if self._aborted:
                            break
                        for out in resampler.resample(frame):
                            self._on_audio(out.to_ndarray().reshape(-1).copy())
                    if not self._aborted:
                        for out in resampler.resample(None):
                            self._on_audio(out.to_ndarray().reshape(-1).copy())
            except DecodeError as exc:
                error = exc
            except Exception as exc:
                if not self._aborted:
                    error = DecodeError(_describe(exc, self._format))
        if self._aborted:
            error = None
        try:
            self._on_end(error)
        except Exception:  # the receiver is gone; nothing more to do
            logger.debug("decoder end callback failed", exc_info=True)


def _describe(exc: Exception, fmt: str | None) -> str:
    what = fmt or "a container format (webm, ogg, mp4, wav, mp3, flac, ...)"
    return (f"could not decode the audio as {what}: {exc}. Check audio_format: raw PCM needs "
            "e.g. audio_format='pcm_s16le' with sample_rate and num_channels.")


def decode_file(path: str | Path) -> np.ndarray:
    """A whole file as 16 kHz mono float32 (for offline use and benchmarks)."""
    import av

    parts: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                parts.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(frame))
            parts.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise DecodeError(_describe(exc, None)) from None
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
