"""Container audio → 16 kHz ``pcm_s16le`` mono, for a session resumed after a drop.

Used only after a connection to the service was lost (see ``ledger.py`` for why):
the recording is decoded from its first byte with PyAV on a worker thread, the
audio before the resume point is skipped, and what follows is handed to the
event loop as PCM bytes, in order. Live chunks that arrive later are fed to the
same decoder, so the resumed session continues seamlessly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from ..audio.decoder import SAMPLE_RATE, StreamingDecoder
from .ledger import PCM_RATE

assert SAMPLE_RATE == PCM_RATE


class PcmTranscoder:
    """Decode container bytes to PCM; callbacks run on ``loop``.

    Args:
        skip_ms: recording time to skip (already final upstream).
        on_pcm: receives s16le bytes, in order.
        on_end: called once with None, or a message saying why decoding failed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, skip_ms: int,
                 on_pcm: Callable[[bytes], None],
                 on_end: Callable[[str | None], None]) -> None:
        self._loop = loop
        self._skip = skip_ms * PCM_RATE // 1000
        self._on_pcm = on_pcm
        self._on_end = on_end
        self._closed = False
        self._decoder = StreamingDecoder(self._decoded, self._ended)

    def feed(self, data: bytes) -> None:
        if not self._closed:
            self._decoder.feed(data)

    def close_input(self) -> None:
        self._decoder.close_input()

    def abort(self) -> None:
        """Stop now (the session is over); bounded wait for the thread."""
        self._closed = True
        self._decoder.abort(timeout=2.0)

    # -- on the decoder's thread ----------------------------------------------------

    def _decoded(self, samples: np.ndarray) -> None:
        if self._skip:
            cut = min(self._skip, len(samples))
            samples = samples[cut:]
            self._skip -= cut
        if len(samples):
            pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            self._call(self._on_pcm, pcm)

    def _ended(self, error: Exception | None) -> None:
        self._call(self._on_end, None if error is None else str(error))

    def _call(self, fn: Callable[[object], None], arg: object) -> None:
        if self._closed or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, fn, arg)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _deliver(self, fn: Callable[[object], None], arg: object) -> None:
        if not self._closed:
            fn(arg)
