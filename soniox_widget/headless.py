"""Transcribe an audio file without a browser, through the same upstream session.

Works from a plain script and from a notebook cell: where an event loop already
runs in this thread (ipykernel), the blocking call runs the session on a
private loop in a worker thread instead of ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from .backend import choose_backend
from .config import SonioxConfig
from .errors import ConfigError, SonioxError
from .session import ReconnectPolicy
from .transcript import Transcript
from .upstream import UpstreamSession

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
_FALLBACK_BYTES_PER_SECOND = 16_000  # 128 kb/s: a safe guess for compressed audio
#: ``progress=None`` shows a bar for files longer than this (seconds of audio).
PROGRESS_AFTER_SECONDS = 10.0


def audio_duration(path: Path) -> float | None:
    """Seconds of audio in the file, or None if it cannot be told.

    A recording made by a browser's MediaRecorder (webm/opus) has no duration in its
    header; its packets' timestamps tell it without decoding the audio.
    """
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path)) as w:
                return w.getnframes() / float(w.getframerate())
        except (wave.Error, EOFError):
            pass
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None  # not audio to PyAV (it guesses formats from any bytes)
            if container.duration:
                return container.duration / 1_000_000
            return _duration_of_packets(container)
    except Exception:  # unreadable here; the server will say what is wrong
        return None


def _duration_of_packets(container: Any) -> float | None:
    """From the first audio packet's start to the last one's end (demuxed, not decoded)."""
    stream = container.streams.audio[0]
    first = last = None
    for packet in container.demux(stream):
        if packet.pts is None or packet.time_base is None:
            continue
        start = float(packet.pts * packet.time_base)
        end = start + float((packet.duration or 0) * packet.time_base)
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    if first is None or last is None or last <= first:
        return None
    return last - first


async def read_audio_file(file: Path) -> tuple[bytes, float | None]:
    """The file's bytes and its duration in seconds (None if it cannot be told)."""
    try:
        data = await asyncio.to_thread(file.read_bytes)
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"no audio file at {file}; check the path") from None
    if not data:
        raise ConfigError(f"{file} is empty; nothing to transcribe")
    return data, await asyncio.to_thread(audio_duration, file)


async def paced_chunks(data: bytes, seconds: float | None, pace: bool,
                       wait: Callable[[], Awaitable[object]] | None = None,
                       on_progress: Callable[[int], None] | None = None,
                       ) -> AsyncIterator[bytes]:
    """The audio in pieces of ``CHUNK_SECONDS`` of sound, at real time when ``pace``.

    Without a known duration the bytes are paced as 128 kb/s audio. ``wait`` is
    awaited before each piece (a pause holds the file; the clock restarts after it).
    ``on_progress`` gets the bytes handed out so far, after each piece is taken.
    """
    if not seconds:
        seconds = len(data) / _FALLBACK_BYTES_PER_SECOND
        if pace:
            logger.warning("cannot tell the audio's duration; pacing it as 128 kb/s audio")
    per_second = len(data) / seconds
    step = max(1024, int(per_second * CHUNK_SECONDS))
    loop = asyncio.get_running_loop()
    began = loop.time()
    for i in range(0, len(data), step):
        if wait is not None:
            paused_at = loop.time()
            await wait()
            began += loop.time() - paused_at
        piece = data[i : i + step]
        yield piece
        if on_progress is not None:
            on_progress(i + len(piece))
        # Due when the audio in the bytes sent so far has played (a piece is at least
        # 1 kB, which is more than 0.1 s of audio at low bit rates).
        delay = began + (i + len(piece)) / per_second - loop.time() if pace else 0.0
        await asyncio.sleep(max(0.0, delay))


async def transcribe_file_async(
    path: str | os.PathLike[str],
    *,
    api_key: str | None = None,
    url: str | None = None,
    engine: str = "auto",
    realtime: bool | None = None,
    on_reply: Any = None,
    reconnect: ReconnectPolicy | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Transcript:
    """Stream a file through an upstream session and return its :class:`Transcript`.

    Args:
        path: an audio file (wav, mp3, flac, ogg, webm, ...); sent as is with
            ``audio_format="auto"`` unless you pass a raw ``audio_format``.
        engine: ``"auto"`` (Soniox with a key, else the offline engine), ``"soniox"``
            or ``"local"``.
        realtime: pace the audio at real time (default: yes for Soniox, no for a
            local server, which can take it faster).
        on_reply: optional callable receiving each :class:`~soniox_widget.protocol.Reply`.
        reconnect: what to do when the connection drops mid-file (default: reconnect
            up to 3 times and continue where the final words end).
        progress: show a progress bar (``tqdm.auto``: a widget in a notebook, else on
            stderr) of the audio sent: ``None`` (default) for files longer than
            about 10 s, ``True`` always, ``False`` never.
        **options: :class:`SonioxConfig` options (language_hints=["en"], ...).
    """
    config = SonioxConfig.from_options(options)
    data, seconds = await read_audio_file(Path(path))
    backend = choose_backend(engine, api_key=api_key, url=url, model=config.model)
    pace = backend.paces_realtime if realtime is None else realtime
    transcript = Transcript()
    bar = _progress_bar(Path(path), data, seconds, progress)
    try:
        async with UpstreamSession(config, backend=backend, reconnect=reconnect) as session:
            async def feed() -> None:
                on_progress = bar.update_bytes if bar is not None else None
                async for piece in paced_chunks(data, seconds, pace, on_progress=on_progress):
                    if session.state.is_over:
                        return  # failed: replies() raises why
                    await session.write_audio(piece)  # waits while the service is away
                session.end()

            feeder = asyncio.create_task(feed())
            try:
                async for reply in session.replies():
                    transcript.apply(reply)
                    if on_reply is not None:
                        on_reply(reply)
            finally:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
    except SonioxError as exc:
        exc.partial = transcript.final_part()  # what was final is not lost with the session
        raise
    finally:
        if bar is not None:
            bar.close()
    return transcript


class _ProgressBar:
    """A tqdm bar of the audio sent: seconds when the duration is known, else bytes."""

    def __init__(self, name: str, total_bytes: int, seconds: float | None) -> None:
        from tqdm.auto import tqdm

        self._total_bytes = total_bytes
        self._seconds = seconds
        if seconds:
            self._bar = tqdm(total=seconds, desc=name, unit="s", leave=True,
                             bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s of audio "
                                        "[{elapsed}<{remaining}]")
        else:
            self._bar = tqdm(total=total_bytes, desc=name, unit="B", unit_scale=True,
                             unit_divisor=1024, leave=True)

    def update_bytes(self, sent: int) -> None:
        done = sent / self._total_bytes * self._seconds if self._seconds else sent
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(file: Path, data: bytes, seconds: float | None,
                  progress: bool | None) -> _ProgressBar | None:
    if progress is None:
        # Without a known duration, guess it as pacing does (128 kb/s).
        length = seconds or len(data) / _FALLBACK_BYTES_PER_SECOND
        progress = length > PROGRESS_AFTER_SECONDS
    return _ProgressBar(file.name, len(data), seconds) if progress else None


def transcribe_file(path: str | os.PathLike[str], **kwargs: Any) -> Transcript:
    """Blocking twin of :func:`transcribe_file_async`; safe inside a notebook cell.

    Takes the same arguments (``progress=False`` hides the bar shown for files
    longer than about 10 s).

    Example::

        from soniox_widget import transcribe_file
        print(transcribe_file("speech.wav", language_hints=["en"]).final_text)
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(transcribe_file_async(path, **kwargs))
    # A loop already runs in this thread (a notebook cell): use a private one.
    with concurrent.futures.ThreadPoolExecutor(1, "soniox-transcribe") as pool:
        return pool.submit(asyncio.run, transcribe_file_async(path, **kwargs)).result()
