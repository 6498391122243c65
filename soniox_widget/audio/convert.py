"""A whole recording's bytes → samples or a file; live chunks → samples for analysis.

The widget keeps the last recording as the bytes it received (``rec.last_audio``):
the browser's webm/opus, or whatever a file or ``feed()`` gave, possibly raw PCM.
These helpers turn those bytes into something to analyse or keep:

- :func:`decode_bytes`: the recording as 1-D float32 mono at any rate.
- :func:`write_audio`: the recording as a file; the original bytes when the suffix
  names their own container, else a WAV, FLAC or Opus file encoded with PyAV.
- :class:`ChunkDecoder`: 16 kHz float32 mono while the recording is still arriving.

Decoding and resampling are FFmpeg's (through PyAV), which low-passes before it
decimates: nothing above the target's Nyquist frequency folds back as aliasing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import numbers
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .decoder import (
    RAW_PCM_FORMATS,
    SAMPLE_RATE,
    DecodeError,
    RawPCMDecoder,
    StreamingDecoder,
)

logger = logging.getLogger(__name__)

__all__ = ["ChunkDecoder", "decode_bytes", "write_audio"]

# Suffixes under which a container's bytes are written unchanged, by FFmpeg's demuxer
# name. The first is the one to suggest. Others fall back to FFmpeg's own list.
_OWN_SUFFIXES = {
    "matroska,webm": (".webm", ".mka", ".mkv"),
    "ogg": (".ogg", ".oga"),
    "mov,mp4,m4a,3gp,3g2,mj2": (".mp4", ".m4a"),
    "wav": (".wav",),
    "mp3": (".mp3",),
    "flac": (".flac",),
}
_RAW_SUFFIXES = (".raw", ".pcm")
# Suffixes that any recording can be written to: (FFmpeg muxer, encoder).
_ENCODED = {
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".webm": ("webm", "libopus"),
    ".ogg": ("ogg", "libopus"),
}
# Codecs that .webm and .ogg both carry: such a source is re-muxed, not re-encoded.
_REMUXABLE = frozenset({"opus", "vorbis"})
_FRAME_SAMPLES = 65_536  # raw PCM goes to the encoder in frames of this many samples

_WHAT_TO_CHECK = (
    "Check that these are the bytes of one whole recording from its first byte (a container "
    "such as webm, ogg, mp4, wav, mp3 or flac; the first browser chunk carries the header), "
    "or, for raw PCM, pass audio_format='pcm_s16le' (or another raw format) with "
    "source_rate and num_channels."
)


@dataclass(frozen=True)
class _Source:
    """What the bytes are: a container (with its demuxer name) or raw PCM."""

    data: bytes
    container: str | None  # FFmpeg's demuxer name; None for raw PCM
    codec: str | None
    rate: int
    channels: int
    raw_format: str | None = None

    @property
    def own_suffixes(self) -> tuple[str, ...]:
        if self.container is None:
            return _RAW_SUFFIXES
        if self.container in _OWN_SUFFIXES:
            own = _OWN_SUFFIXES[self.container]
            if self.container == "matroska,webm" and self.codec not in _REMUXABLE:
                own = own[1:]  # WebM carries only Opus and Vorbis audio; this is Matroska
            elif self.container == "ogg" and self.codec == "opus":
                own = (*own, ".opus")
            return own
        import av

        try:
            extensions = av.format.ContainerFormat(self.container).extensions
        except Exception:  # an unusual demuxer: its first name is the best guess
            extensions = set()
        return tuple(sorted(f".{e}" for e in extensions)) or (
            f".{self.container.split(',')[0]}",)


# -- decoding ------------------------------------------------------------------------


def decode_bytes(data: bytes, sample_rate: int = SAMPLE_RATE, *, audio_format: str = "auto",
                 num_channels: int | None = None, source_rate: int | None = None,
                 ) -> np.ndarray:
    """A whole recording as 1-D float32 mono samples at ``sample_rate``.

    Args:
        data: the recording's bytes: a container (webm/opus from the browser, even live
            webm with no duration or cues; ogg, mp4, wav, mp3, flac, ...) or raw PCM.
        sample_rate: the rate of the result (FFmpeg's resampler, anti-aliased).
        audio_format: ``"auto"`` to detect the container, a container name as a hint
            (``"webm"``, ``"ogg"``, ...), or a raw format such as ``"pcm_s16le"``.
        num_channels, source_rate: the layout of raw PCM (required for raw formats).

    Raises:
        DecodeError: the bytes are empty or not audio in that format.
        ValueError: a bad ``sample_rate``, or a raw format without its layout.

    Example::

        from soniox_widget.audio import decode_bytes
        samples = decode_bytes(rec.last_audio)  # 16 kHz float32
        print(f"{len(samples) / 16000:.1f} s")
    """
    if not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    data = _as_bytes(data)
    if _is_raw(audio_format):
        decoder = _raw_decoder(audio_format, num_channels, source_rate, sample_rate)
        head = decoder.decode(data)
        if decoder.pending:
            logger.warning("the raw audio ends with %d bytes of an incomplete frame; "
                           "they were left out", len(decoder.pending))
        return np.concatenate([head, decoder.flush()])

    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts: list[np.ndarray] = []
    with _open_container(data, audio_format) as container:
        for frame in _decoded_frames(container):
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _as_bytes(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the recording's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise DecodeError("there is no audio: the recording is empty. Check that something "
                          "was recorded (rec.last_audio holds the last recording's bytes).")
    return data


def _is_raw(audio_format: str) -> bool:
    return audio_format.startswith("pcm_") or audio_format in ("mulaw", "alaw")


def _raw_decoder(audio_format: str, num_channels: int | None, source_rate: int | None,
                 target_rate: int) -> RawPCMDecoder:
    if audio_format not in RAW_PCM_FORMATS:
        raise DecodeError(f"raw audio_format {audio_format!r} cannot be decoded here; use one "
                          f"of {', '.join(sorted(RAW_PCM_FORMATS))} or a container format")
    if not source_rate or not num_channels:
        raise ValueError(f"audio_format {audio_format!r} is raw PCM: pass its source_rate "
                         "(e.g. 16000) and num_channels (e.g. 1)")
    return RawPCMDecoder(audio_format, source_rate, num_channels, target_rate=target_rate)


@contextlib.contextmanager
def _open_container(data: bytes, audio_format: str) -> Iterator[Any]:
    import av

    hint = None if audio_format in (None, "auto") else audio_format
    what = f"{hint} audio" if hint else "audio"
    try:
        container = av.open(io.BytesIO(data), mode="r", format=hint)
    except (av.error.FFmpegError, ValueError) as exc:  # ValueError: an unknown format hint
        raise DecodeError(f"could not read {len(data)} bytes as {what}: {exc}. "
                          f"{_WHAT_TO_CHECK}") from None
    with container:
        if not container.streams.audio:
            raise DecodeError(f"the data ({container.format.name}) has no audio stream. "
                              f"{_WHAT_TO_CHECK}")
        yield container


def _decoded_frames(container: Any) -> Iterator[Any]:
    """The first audio stream's frames, without timestamps.

    A damaged packet is skipped (as the ffmpeg tool does); damage that stops the
    demuxer ends the audio there, with a warning, if some audio came before it.
    """
    import av

    stream = container.streams.audio[0]
    seconds = 0.0
    skipped = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                skipped += 1
                continue
            for frame in frames:
                frame.pts = None  # live webm's timestamps need not start at 0
                seconds += frame.samples / (frame.sample_rate or 1)
                yield frame
    except av.error.FFmpegError as exc:
        if not seconds:
            raise DecodeError(f"could not decode the audio ({container.format.name}): {exc}. "
                              f"{_WHAT_TO_CHECK}") from None
        logger.warning("the recording is damaged after %.1f s of audio (%s); kept what came "
                       "before", seconds, exc)
    if skipped:
        logger.warning("skipped %d damaged audio packets", skipped)


# -- writing -------------------------------------------------------------------------


def write_audio(data: bytes, path: str | os.PathLike[str], *, audio_format: str = "auto",
                num_channels: int | None = None, source_rate: int | None = None) -> Path:
    """Write a recording to ``path``, in the format its suffix names.

    - The suffix of the bytes' own container (``.webm`` for the browser's recording,
      ``.ogg``, ``.mp4``/``.m4a``, ``.wav``, ``.mp3``, ``.flac``; ``.raw``/``.pcm`` for
      raw PCM): the original bytes, unchanged.
    - ``.wav``: 16-bit PCM at the source's sample rate and channel count.
    - ``.flac``: FLAC (lossless, 16-bit) at the source's sample rate and channels.
    - ``.webm``/``.ogg``: Opus; Opus or Vorbis audio is moved over without re-encoding.

    Args:
        audio_format, num_channels, source_rate: as for :func:`decode_bytes` (raw PCM
            needs its layout).

    Returns the path. The file appears whole or not at all (written beside it, then
    renamed). Raises ``ValueError`` for another suffix, listing the supported ones,
    and :class:`DecodeError` for bytes that are not audio.

    Example::

        from soniox_widget.audio import write_audio
        write_audio(rec.last_audio, "take1.webm")  # as recorded
        write_audio(rec.last_audio, "take1.wav")   # for tools that want WAV
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: there is no folder {target.parent}")
    source = _probe(_as_bytes(data), audio_format, num_channels, source_rate)
    suffix = target.suffix.lower()
    if suffix in source.own_suffixes:
        _write_atomically(target, lambda tmp: tmp.write_bytes(source.data))
    elif suffix in _ENCODED:
        fmt, codec = _ENCODED[suffix]
        _write_atomically(target, lambda tmp: _encode(source, tmp, fmt, codec))
    else:
        supported = list(dict.fromkeys([*source.own_suffixes, *_ENCODED]))
        raise ValueError(f"cannot write {target.name!r}: the suffix {target.suffix or '(none)'!r} "
                         f"is not supported; use one of {', '.join(supported)}")
    return target


def _probe(data: bytes, audio_format: str, num_channels: int | None,
           source_rate: int | None) -> _Source:
    if _is_raw(audio_format):
        decoder = _raw_decoder(audio_format, num_channels, source_rate, SAMPLE_RATE)
        return _Source(data, None, audio_format, decoder.rate, decoder.channels, audio_format)
    with _open_container(data, audio_format) as container:
        ctx = container.streams.audio[0].codec_context
        return _Source(data, container.format.name, ctx.name, ctx.sample_rate or SAMPLE_RATE,
                       ctx.layout.nb_channels or 1)


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _encode(source: _Source, tmp: Path, fmt: str, codec: str) -> None:
    import av

    if codec == "libopus" and source.codec in _REMUXABLE:
        try:
            _remux(source, tmp, fmt)
            return
        except (av.error.FFmpegError, ValueError) as exc:  # e.g. odd timestamps
            logger.info("could not re-mux the %s audio into %s (%s); re-encoding it",
                        source.codec, fmt, exc)
    channels = source.channels
    rate = source.rate
    if codec == "libopus":  # Opus runs at 48 kHz, and (simple mapping) 1 or 2 channels
        channels, rate = min(channels, 2), 48_000
    layout = av.AudioLayout(f"{channels}c")
    with av.open(str(tmp), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout.name,
                                format="s16" if codec != "libopus" else "flt")
        # PyAV's encoder resamples each frame to its own format, layout, rate and frame
        # size (and flushes that resampler at the end).
        for frame in _source_frames(source):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _source_frames(source: _Source) -> Iterator[Any]:
    import av

    if source.raw_format is None:
        with _open_container(source.data, "auto") as container:
            yield from _decoded_frames(container)
        return
    decoder = RawPCMDecoder(source.raw_format, source.rate, source.channels)
    samples = decoder.frames(source.data)
    layout = av.AudioLayout(f"{source.channels}c").name
    for i in range(0, len(samples), _FRAME_SAMPLES):
        part = np.ascontiguousarray(samples[i : i + _FRAME_SAMPLES]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(part, format="flt", layout=layout)
        frame.sample_rate = source.rate
        yield frame


def _remux(source: _Source, tmp: Path, fmt: str) -> None:
    import av

    with av.open(io.BytesIO(source.data)) as inp, av.open(str(tmp), mode="w", format=fmt) as out:
        stream = inp.streams.audio[0]
        if hasattr(out, "add_stream_from_template"):
            copy = out.add_stream_from_template(stream)
        else:  # PyAV < 14
            copy = out.add_stream(template=stream)
        for packet in inp.demux(stream):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = copy
            out.mux(packet)


# -- live ----------------------------------------------------------------------------


class ChunkDecoder:
    """Decode a recording while it arrives: 16 kHz float32 mono, in order, to a callback.

    Built on :class:`StreamingDecoder` (containers) and :class:`RawPCMDecoder` (raw
    PCM). ``on_samples`` is called on the decoder's own thread, never on the caller's:
    hand the samples to your event loop (``loop.call_soon_threadsafe``) or a queue if
    the analysis must run elsewhere. An exception in it is logged, and decoding goes on.

    Args:
        on_samples: receives each new piece of samples (a 1-D float32 array).
        audio_format, num_channels, source_rate: as for :func:`decode_bytes`.

    After :meth:`close`, :attr:`error` is None or the :class:`DecodeError` that ended
    decoding early.

    Example::

        levels = []
        dec = ChunkDecoder(lambda x: levels.append(float(np.sqrt(np.mean(x**2)))))
        for chunk in chunks:
            dec.feed(chunk)
        dec.close()
    """

    def __init__(self, on_samples: Callable[[np.ndarray], None], *,
                 audio_format: str = "auto", num_channels: int | None = None,
                 source_rate: int | None = None) -> None:
        self._on_samples = on_samples
        self.error: DecodeError | None = None
        self._closed = False
        self._callback_failed = False
        self._stream: StreamingDecoder | None = None
        self._raw: RawPCMDecoder | None = None
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._aborted = False
        if _is_raw(audio_format):
            self._raw = _raw_decoder(audio_format, num_channels, source_rate, SAMPLE_RATE)
            self._thread = threading.Thread(target=self._run_raw, name="soniox-chunk-decoder",
                                            daemon=True)
            self._thread.start()
        else:
            self._stream = StreamingDecoder(self._deliver, self._on_end,
                                            None if audio_format == "auto" else audio_format)

    def feed(self, data: bytes) -> None:
        """Queue the next chunk (bytes, bytearray or memoryview); returns at once."""
        if self._closed:
            logger.debug("ChunkDecoder.feed after close: %d bytes ignored", len(data))
            return
        data = bytes(data)
        if not data:
            return
        if self._stream is not None:
            self._stream.feed(data)
        else:
            self._queue.put(data)

    def close(self, timeout: float = 5.0) -> None:
        """End of input: decode what is queued, deliver the tail, and wait for the thread
        (at most ``timeout`` seconds; then it is stopped)."""
        if not self._closed:
            self._closed = True
            if self._stream is not None:
                self._stream.close_input()
            else:
                self._queue.put(None)
        self._join(timeout)
        if self.alive:
            logger.warning("the audio decoder did not finish within %.1f s; stopped it",
                           timeout)
            self.abort(timeout=1.0)

    def abort(self, timeout: float = 5.0) -> None:
        """Stop now, dropping what is not decoded yet (bounded wait for the thread)."""
        self._closed = True
        self._aborted = True
        if self._stream is not None:
            self._stream.abort(timeout)
        else:
            self._queue.put(None)
            self._join(timeout)

    @property
    def alive(self) -> bool:
        """True while the decoder's thread runs."""
        if self._stream is not None:
            return self._stream.alive
        return self._thread is not None and self._thread.is_alive()

    def _join(self, timeout: float) -> None:
        if self._stream is not None:
            self._stream.join(timeout)
        elif self._thread is not None:
            self._thread.join(timeout)

    # -- on the decoder's thread -----------------------------------------------------

    def _run_raw(self) -> None:
        assert self._raw is not None
        while True:
            data = self._queue.get()
            if self._aborted:
                return
            try:
                if data is None:
                    self._deliver(self._raw.flush())
                    return
                self._deliver(self._raw.decode(data))
            except Exception as exc:  # not expected for raw PCM; keep the reason
                self.error = DecodeError(f"could not convert the raw audio: {exc}")
                return

    def _deliver(self, samples: np.ndarray) -> None:
        if not len(samples) or self._aborted:
            return
        try:
            self._on_samples(samples)
        except Exception:
            if not self._callback_failed:  # once: it would likely fail for every piece
                logger.exception("the ChunkDecoder callback failed (later failures are not "
                                 "logged)")
            self._callback_failed = True

    def _on_end(self, error: DecodeError | None) -> None:
        self.error = error
