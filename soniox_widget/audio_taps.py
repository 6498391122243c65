"""Audio taps: Python code that listens to a recording's audio as it goes upstream.

``rec.on_audio(callback)`` registers a listener: with ``pcm=False`` it gets the bytes as
the source gave them (the browser's webm/opus), with ``pcm=True`` float32 16 kHz mono
arrays decoded in the kernel. :class:`AudioTaps` keeps the listeners of a widget;
:meth:`AudioTaps.open` makes the :class:`Tap` of one recording, which holds a decoder
only when a listener wants PCM, and is closed when the recording ends (the decoder's
last samples still reach the listeners).

A listener that raises is reported once in the log and never stops the recording.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import SonioxConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    callback: Callable[[Any], object]
    pcm: bool


def format_of(config: SonioxConfig) -> dict[str, Any]:
    """How to read the bytes of a recording made with ``config`` (raw layouts only; a
    container says its own)."""
    if config.is_raw_audio:
        return {"audio_format": config.audio_format, "num_channels": config.num_channels,
                "source_rate": config.sample_rate}
    return {}


class AudioTaps:
    """The audio listeners of one widget, and one reporting rule for their failures."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._reported: set[tuple[str, int]] = set()

    def add(self, callback: Callable[[Any], object], *, pcm: bool) -> None:
        self._listeners.append(Listener(callback, pcm))

    def remove(self, callback: Callable[[Any], object]) -> None:
        self._listeners = [a for a in self._listeners if a.callback is not callback]

    def clear(self) -> None:
        self._listeners.clear()

    def call_safely(self, callback: Callable[[Any], object], arg: Any, what: str) -> None:
        """Call a user's callback; one that raises is logged once, never re-raised."""
        try:
            callback(arg)
        except Exception:
            key = (what, id(callback))
            if key not in self._reported:
                self._reported.add(key)
                logger.exception("%s callback %r failed (reported once; the recording "
                                 "goes on)", what, callback)

    def open(self, config: SonioxConfig, loop: asyncio.AbstractEventLoop) -> Tap | None:
        """The tap of a recording made with ``config``: the listeners as they are now
        (later changes take effect from the next recording); None without listeners."""
        listeners = list(self._listeners)
        if not listeners:
            return None
        return Tap(listeners, config, loop, self.call_safely)


class Tap:
    """The listeners of one recording: ``feed`` each chunk, ``close`` at its end."""

    def __init__(self, listeners: list[Listener], config: SonioxConfig,
                 loop: asyncio.AbstractEventLoop,
                 call: Callable[[Callable[[Any], object], Any, str], None]) -> None:
        self._raw = [a.callback for a in listeners if not a.pcm]
        self._pcm = [a.callback for a in listeners if a.pcm]
        self._call = call
        self._decoder: Any = None
        if self._pcm:
            from .audio import ChunkDecoder

            def deliver(samples: Any) -> None:  # on the decoder's thread
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._deliver_pcm, samples)

            self._decoder = ChunkDecoder(deliver, **format_of(config))

    def feed(self, data: bytes) -> None:
        for callback in self._raw:
            self._call(callback, data, "on_audio")
        if self._decoder is not None:
            self._decoder.feed(data)

    def close(self) -> None:
        """Flush the decoder's last samples to the PCM listeners (blocking: call it off
        the event loop)."""
        if self._decoder is not None:
            self._decoder.close()

    @property
    def decodes(self) -> bool:
        return self._decoder is not None

    def _deliver_pcm(self, samples: Any) -> None:
        for callback in self._pcm:
            self._call(callback, samples, "on_audio")
