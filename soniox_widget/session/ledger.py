"""The audio a session may have to send again after a reconnect (pure, no I/O).

A new upstream connection knows nothing of the old one, so it is sent the audio
whose words were not final yet. Where that audio starts is a time (the old
connection's final position); how to cut bytes at a time depends on the format:

* Raw PCM (``pcm_s16le`` and friends): a time is a byte offset. Only the bytes
  after the final position are kept, so what is kept is bounded by how far the
  non-final words trail the audio (a few seconds).
* Containers (the browser's webm/opus, wav, mp3, ...): bytes from the middle of
  a container cannot be decoded without its header, and cluster or frame
  boundaries differ per format. So the stream is kept from its start, and after a
  drop it is decoded to 16 kHz ``pcm_s16le`` in the kernel (see
  ``transcode.py``); the new connection gets PCM from the final position on. The
  stream is compressed (about 4 kB/s from the browser), so keeping it is cheap;
  past ``max_container_bytes`` it is let go and a drop ends the session instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: After a reconnect, container audio goes upstream as this raw format.
PCM_FORMAT = "pcm_s16le"
PCM_RATE = 16_000
PCM_CHANNELS = 1

_SAMPLE_BYTES = {"8": 1, "16": 2, "24": 3, "32": 4, "64": 8}


def raw_frame_bytes(audio_format: str, num_channels: int) -> int:
    """Bytes per sample frame of a raw format (``pcm_s16le`` mono → 2)."""
    if audio_format in ("mulaw", "alaw"):
        width = 1
    else:
        digits = "".join(ch for ch in audio_format if ch.isdigit())
        width = _SAMPLE_BYTES.get(digits, 0)
    if width == 0:
        raise ValueError(f"not a raw audio format: {audio_format!r}")
    return width * num_channels


@dataclass
class RawLedger:
    """Raw audio from ``base_ms`` on; cut by time, bounded by ``max_ms``."""

    sample_rate: int
    frame_bytes: int
    max_ms: int = 60_000
    base_frames: int = 0
    _buf: bytearray | None = None
    _partial: int = 0  # bytes of an incomplete frame at the end

    def __post_init__(self) -> None:
        self._buf = bytearray()

    @property
    def base_ms(self) -> int:
        return self.base_frames * 1000 // self.sample_rate

    @property
    def end_ms(self) -> int:
        return self._frames_to_ms(self.base_frames + len(self._buf) // self.frame_bytes)

    def _frames_to_ms(self, frames: int) -> int:
        return frames * 1000 // self.sample_rate

    def _ms_to_frames(self, ms: int) -> int:
        return ms * self.sample_rate // 1000

    def append(self, data: bytes) -> None:
        self._buf.extend(data)
        held = len(self._buf) // self.frame_bytes
        over = held - self._ms_to_frames(self.max_ms)
        if over > 0:
            # Words this far behind would be lost by a reconnect; a healthy session
            # finalises long before (Soniox: about a second).
            logger.debug("resend buffer over %d ms; dropping its oldest %d frames",
                         self.max_ms, over)
            self.trim_frames(self.base_frames + over)

    def trim_to(self, ms: int) -> None:
        """Forget audio before ``ms`` (it is final)."""
        self.trim_frames(self._ms_to_frames(ms))

    def trim_frames(self, frame: int) -> None:
        drop = min(frame - self.base_frames, len(self._buf) // self.frame_bytes)
        if drop > 0:
            del self._buf[: drop * self.frame_bytes]
            self.base_frames += drop

    def since(self, ms: int) -> tuple[int, bytes]:
        """``(start_ms, bytes)``: the audio from ``ms`` on (or from the oldest kept)."""
        frame = max(self.base_frames, self._ms_to_frames(ms))
        offset = (frame - self.base_frames) * self.frame_bytes
        return self._frames_to_ms(frame), bytes(self._buf[offset:])

    def __len__(self) -> int:
        return len(self._buf)


@dataclass
class ContainerLedger:
    """Container audio kept from its first byte, so it can be decoded again."""

    max_bytes: int = 256 * 1024 * 1024
    _buf: bytearray | None = None
    complete: bool = True  # False once over max_bytes: no longer resumable

    def __post_init__(self) -> None:
        self._buf = bytearray()

    def append(self, data: bytes) -> None:
        if not self.complete:
            return
        if len(self._buf) + len(data) > self.max_bytes:
            logger.warning("the recording is over %d MB; a dropped connection can no longer "
                           "be resumed", self.max_bytes // (1024 * 1024))
            self.complete = False
            self._buf = bytearray()
            return
        self._buf.extend(data)

    def all(self) -> bytes:
        return bytes(self._buf)

    def release(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)
