"""Container audio → 16 kHz ``pcm_s16le`` mono, for a session resumed after a drop.

Used only after a connection to the service was lost (see ``ledger.py`` for why):
the recording is decoded from its first byte with PyAV on a worker thread, the
audio before the resume point is skipped, and what follows is handed to the
event loop as PCM bytes, in order. Live chunks that arrive later are fed to the
same decoder, so the resumed session continues seamlessly.

A *mark* (a finalize request) placed between chunks comes back out between the
PCM of the audio before it and the PCM of the audio after it, so a finalize never
overtakes audio that is still being decoded: a mark is released once the
demuxer reads a packet that starts at or after the mark's byte position (every
packet before it is decoded by then), when the decoder has read every byte up to
the mark and waits for more (a paused source: at most the one packet cut by the
end of the input is still held back), or when the input ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..audio.decoder import _FeedReader
from .ledger import PCM_RATE

logger = logging.getLogger(__name__)


class PcmTranscoder:
    """Decode container bytes to PCM; every callback runs on ``loop``, in order.

    Args:
        skip_ms: recording time to skip (already final upstream).
        on_pcm: receives s16le bytes.
        on_mark: receives each mark, at its place in the audio.
        on_end: called once with None, or a message saying why decoding failed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, skip_ms: int,
                 on_pcm: Callable[[bytes], None], on_mark: Callable[[Any], None],
                 on_end: Callable[[str | None], None]) -> None:
        self._loop = loop
        self._skip = skip_ms * PCM_RATE // 1000
        self._on_pcm = on_pcm
        self._on_mark = on_mark
        self._on_end = on_end
        self._reader = _FeedReader()
        self._read = 0  # bytes the decoder has taken from the reader
        self._fed = 0
        self._marks: deque[tuple[int, Any]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="soniox-transcoder",
                                        daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        if not self._closed:
            with self._lock:
                self._fed += len(data)
            self._reader.feed(data)

    def mark(self, item: Any) -> None:
        """Pass ``item`` to ``on_mark`` once all audio fed so far is out as PCM."""
        with self._lock:
            self._marks.append((self._fed, item))

    def close_input(self) -> None:
        self._reader.close_input()

    def abort(self) -> None:
        """Stop now (the session is over); bounded wait for the thread."""
        self._closed = True
        self._reader.abort()
        self._thread.join(2.0)

    # -- on the decoder's thread ----------------------------------------------------

    def _run(self) -> None:
        import av

        error: str | None = None
        try:
            with av.open(self, mode="r", options={"probesize": "32768"}) as container:
                if not container.streams.audio:
                    raise ValueError("the data has no audio stream")
                stream = container.streams.audio[0]
                resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
                for packet in container.demux(stream):
                    if self._closed:
                        break
                    if packet.pos is not None and packet.pos >= 0:
                        self._release_marks(packet.pos)
                    for frame in packet.decode():
                        for out in resampler.resample(frame):
                            self._emit(out.to_ndarray().tobytes())
                if not self._closed:
                    for out in resampler.resample(None):
                        self._emit(out.to_ndarray().tobytes())
        except Exception as exc:
            if not self._closed:
                error = f"{type(exc).__name__}: {exc}"
        self._release_marks(None)
        self._call(self._on_end, error)

    def read(self, n: int = -1) -> bytes:
        """The decoder's input (PyAV reads it like a file), on the decoder's thread."""
        if self._reader.starved():
            self._release_marks(self._read)  # all complete packets before it are out
        data = self._reader.read(n)
        self._read += len(data)
        return data

    def _emit(self, pcm: bytes) -> None:
        if self._skip:
            cut = min(self._skip * 2, len(pcm))
            pcm = pcm[cut:]
            self._skip -= cut // 2
        if pcm:
            self._call(self._on_pcm, pcm)

    def _release_marks(self, upto: int | None) -> None:
        while True:
            with self._lock:
                if not self._marks or (upto is not None and self._marks[0][0] > upto):
                    return
                _, item = self._marks.popleft()
            self._call(self._on_mark, item)

    def _call(self, fn: Callable[[Any], None], arg: Any) -> None:
        if self._closed or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, fn, arg)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _deliver(self, fn: Callable[[Any], None], arg: Any) -> None:
        if not self._closed:
            fn(arg)
