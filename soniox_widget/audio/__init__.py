"""Decoding and writing audio with PyAV: 16 kHz mono float32 for recognition and analysis.

- :func:`decode_bytes`: a whole recording's bytes (``rec.last_audio``) → samples.
- :func:`write_audio`: a recording → a file (.webm as recorded, .wav, .flac, .ogg).
- :class:`ChunkDecoder`: live chunks → samples, for analysis while recording.
- :class:`StreamingDecoder`, :class:`RawPCMDecoder`, :func:`decode_file`: the
  building blocks the offline engine uses.
"""

from .convert import ChunkDecoder, decode_bytes, write_audio
from .decoder import (
    RAW_PCM_FORMATS,
    SAMPLE_RATE,
    DecodeError,
    RawPCMDecoder,
    StreamingDecoder,
    decode_file,
    resample,
)

__all__ = [
    "RAW_PCM_FORMATS",
    "SAMPLE_RATE",
    "ChunkDecoder",
    "DecodeError",
    "RawPCMDecoder",
    "StreamingDecoder",
    "decode_bytes",
    "decode_file",
    "resample",
    "write_audio",
]
