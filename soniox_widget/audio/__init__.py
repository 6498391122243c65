"""Decoding audio to 16 kHz mono float32 for the offline engine (needs PyAV)."""

from .decoder import SAMPLE_RATE, DecodeError, RawPCMDecoder, StreamingDecoder, decode_file

__all__ = ["SAMPLE_RATE", "DecodeError", "RawPCMDecoder", "StreamingDecoder", "decode_file"]
