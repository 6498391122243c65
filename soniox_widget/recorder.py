"""``SonioxRecorder``: the notebook widget (anywidget) and its kernel-side session.

The browser records with MediaRecorder and sends numbered chunks as binary
buffers of custom messages; this class forwards them, in order, through an
:class:`~soniox_widget.upstream.UpstreamSession` running as a task on the
kernel's own asyncio loop, folds the replies into a
:class:`~soniox_widget.transcript.Transcript`, and exposes the result as traits
that Python code can ``observe``.

Why the transcript is not a synced trait: a synced ``final_text`` would send the
whole text to the browser on every reply, so a long session would get slower and
slower. The traits are observable in Python as usual; the browser gets only what
changed (``delta`` messages, numbered by ``rev``), and a new view asks for a
``snapshot`` once.

Example::

    rec = SonioxRecorder(language_hints=["en"])
    rec                                   # shows the widget; click Record
    rec.observe(lambda ch: print(ch["new"]), names="final_text")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .backend import Backend, choose_backend
from .config import SonioxConfig
from .errors import ConfigError, MissingAPIKeyError, SonioxError, SonioxWidgetError
from .headless import paced_chunks, read_audio_file
from .protocol import Reply
from .transcript import Transcript, segments_of
from .upstream import UpstreamSession

logger = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "static"
#: Chunks that arrived ahead of a missing one, held until the gap is filled.
MAX_HELD_CHUNKS = 64
PYTHON_VIEW = "python"
BUSY = ("connecting", "recording", "finishing")


def _friendly(exc: BaseException, backend: Backend | None) -> str:
    """An error message that says what to do next."""
    if isinstance(exc, SonioxError):
        if exc.error_code == 401 or (exc.reason == "handshake" and exc.error_code == 403):
            return ("The API key was refused (401). Check SONIOX_API_KEY (or the api_key you "
                    "passed), then click Record again.")
        if exc.error_code == 402:
            return f"{exc} — check the billing of your Soniox account."
        if exc.error_code == 429:
            return f"{exc} — too many sessions at once; wait a moment and record again."
        if exc.reason == "connect":
            where = backend.label if backend else "the speech service"
            return (f"Cannot reach {where}: {exc} Click Record to try again.")
        return f"{exc}. Click Record to try again."
    return str(exc)


class _Recording:
    """One start → finished session, with its chunk bookkeeping."""

    def __init__(self, session_id: str, view: str, upstream: UpstreamSession,
                 keep_audio: bool) -> None:
        self.id = session_id
        self.view = view
        self.upstream = upstream
        self.next_seq = 0
        self.held: dict[int, bytes] = {}
        self.expected_chunks: int | None = None
        self.bytes_in = 0
        self.audio = bytearray() if keep_audio else None
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.error: SonioxError | None = None


class SonioxRecorder(anywidget.AnyWidget):
    """Record from the microphone in a notebook and get a live transcript.

    Args:
        api_key: a Soniox key; else ``SONIOX_API_KEY`` or ``.env``. Never stored in a
            trait, the notebook file, a log or an error.
        engine: ``"auto"`` (Soniox with a key, else the offline local engine),
            ``"soniox"`` or ``"local"``.
        url: a Soniox-compatible WebSocket URL (else ``SONIOX_WS_URL``, else Soniox).
        clear_on_start: start each recording with an empty transcript (default) or
            append to the previous one.
        keep_audio: keep the last recording's audio bytes in :attr:`last_audio`
            (the browser's webm/opus at ~4 kB/s), so it can be saved or inspected.
        **options: :class:`SonioxConfig` options (``language_hints=["en"]``, ...).

    Traits you can observe: ``status`` (idle, connecting, recording, finishing,
    error), ``final_text``, ``nonfinal_text``, ``tokens`` (list of dicts), ``error``.
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    # Synced: small, bounded state the view renders directly.
    status = traitlets.Unicode("idle").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    engine_label = traitlets.Unicode("").tag(sync=True)
    active_view = traitlets.Unicode("").tag(sync=True)
    audio_bits_per_second = traitlets.Int(32000).tag(sync=True)
    timeslice_ms = traitlets.Int(120).tag(sync=True)

    # Observable in Python; the view gets them as deltas (see the module docstring).
    final_text = traitlets.Unicode("")
    nonfinal_text = traitlets.Unicode("")
    tokens = traitlets.List()  # of token dicts; no per-item validation (it grows long)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        engine: str = "auto",
        url: str | None = None,
        clear_on_start: bool = True,
        keep_audio: bool = True,
        audio_bits_per_second: int = 32000,
        timeslice_ms: int = 120,
        **options: Any,
    ) -> None:
        # Validate everything before the widget exists, so a typo fails at once.
        self.config = SonioxConfig.from_options(options)
        if not 20 <= timeslice_ms <= 1000:
            raise ConfigError("timeslice_ms must be between 20 and 1000 (120 is a good value)")
        super().__init__(audio_bits_per_second=audio_bits_per_second, timeslice_ms=timeslice_ms)
        self.clear_on_start = clear_on_start
        self.keep_audio = keep_audio
        self._engine_choice = engine
        self._url = url
        self._api_key = api_key  # private attribute; never a trait, never shown
        self._backend: Backend | None = None
        self.transcript = Transcript()
        self._rev = 0
        self._recording: _Recording | None = None
        self._last_recording: _Recording | None = None
        self.bytes_sent_to_views = 0
        # Every session task, queue and trait change of this widget lives on the loop of
        # the thread that created it (a notebook's main thread). ipykernel 7 may hand
        # comm messages to a subshell thread with a loop of its own; they are passed
        # over to this loop rather than touching its objects from another thread.
        self._loop = _loop()
        self._resolve_backend()
        self.on_msg(self._receive_from_front_end)

    def __repr__(self) -> str:
        return (f"SonioxRecorder(status={self.status!r}, engine={self.engine_label!r}, "
                f"final_text={self.final_text[-60:]!r})")

    # -- backend ---------------------------------------------------------------------

    def _resolve_backend(self) -> Backend | None:
        try:
            self._backend = choose_backend(self._engine_choice, api_key=self._api_key,
                                           url=self._url, model=self.config.model)
        except (SonioxWidgetError, RuntimeError) as exc:
            self._backend = None
            self.engine_label = "no engine"
            self.error = str(exc)
            self.status = "error"
            return None
        self.engine_label = self._backend.label
        if self.status == "error" and self._recording is None:
            self.error = ""
            self.status = "idle"
        return self._backend

    # -- front end → kernel ----------------------------------------------------------

    def _receive_from_front_end(self, widget: Any, content: Any, buffers: list[Any]) -> None:
        """Comm callback, on whichever thread the kernel handles comm messages."""
        data = [bytes(b) for b in buffers or []]  # the kernel may reuse the buffers
        if _on_loop(self._loop):
            self._on_front_end_message(widget, content, data)
        else:
            self._loop.call_soon_threadsafe(self._on_front_end_message, widget, content, data)

    def _on_front_end_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        """Never raises: a bad message is logged and dropped, the kernel side lives on."""
        try:
            if not isinstance(content, dict):
                raise ValueError(f"expected a JSON object, got {type(content).__name__}")
            kind = content.get("type")
            handler = {
                "start": self._msg_start,
                "chunk": self._msg_chunk,
                "stop": self._msg_stop,
                "abort": self._msg_abort,
                "finalize": lambda c, b: self.finalize(),
                "snapshot_request": lambda c, b: self._send_snapshot(),
                "view_error": lambda c, b: logger.warning("widget view error: %s",
                                                          c.get("message")),
            }.get(kind)
            if handler is None:
                raise ValueError(f"unknown message type {kind!r}")
            handler(content, buffers)
        except Exception as exc:
            logger.warning("SonioxRecorder ignored a front-end message: %s", exc)

    def _msg_start(self, content: dict[str, Any], buffers: list[Any]) -> None:
        session_id = str(content.get("session") or "")
        view = str(content.get("view") or "")
        if not session_id or not view:
            raise ValueError("start message without session or view id")
        if self._recording is not None:
            self.send({"type": "rejected", "view": view, "session": session_id,
                       "reason": "Another view of this recorder is recording; stop it first."})
            return
        # The browser always sends a container format; let the service detect it.
        config = self.config.replace(audio_format="auto") if self.config.is_raw_audio \
            else self.config
        with contextlib.suppress(MissingAPIKeyError):  # the view was told why (rejected)
            self._begin(session_id, view, config)

    def _current(self, content: dict[str, Any]) -> _Recording:
        rec = self._recording
        if rec is None or content.get("session") != rec.id:
            raise ValueError(f"message for session {content.get('session')!r}, which is not "
                             "recording (late or stray message)")
        return rec

    def _msg_chunk(self, content: dict[str, Any], buffers: list[Any]) -> None:
        rec = self._current(content)
        seq = content.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"chunk without a valid seq number: {seq!r}")
        if not buffers:
            raise ValueError(f"chunk {seq} has no binary buffer")
        data = bytes(buffers[0])
        if seq < rec.next_seq or seq in rec.held:
            raise ValueError(f"chunk {seq} arrived twice or out of order (expected "
                             f"{rec.next_seq}); dropped the duplicate")
        if seq > rec.next_seq:
            if len(rec.held) >= MAX_HELD_CHUNKS:
                raise ValueError(f"chunk {rec.next_seq} never arrived; dropping chunk {seq}")
            logger.warning("chunk %d arrived before chunk %d; holding it", seq, rec.next_seq)
            rec.held[seq] = data
            return
        self._forward(rec, data)
        while rec.next_seq in rec.held:
            self._forward(rec, rec.held.pop(rec.next_seq))

    def _forward(self, rec: _Recording, data: bytes) -> None:
        rec.next_seq += 1
        rec.bytes_in += len(data)
        if rec.audio is not None:
            rec.audio.extend(data)
        if rec.upstream.error is None and not rec.upstream.ended:
            rec.upstream.send_audio(data)

    def _msg_stop(self, content: dict[str, Any], buffers: list[Any]) -> None:
        rec = self._current(content)
        chunks = content.get("chunks")
        if isinstance(chunks, int) and chunks != rec.next_seq + len(rec.held):
            logger.warning("the browser sent %s chunks but %d arrived", chunks,
                           rec.next_seq + len(rec.held))
        for seq in sorted(rec.held):  # a gap never filled: keep what we have, in order
            logger.warning("chunk gap before chunk %d; forwarding it anyway", seq)
            rec.next_seq = seq
            self._forward(rec, rec.held.pop(seq))
        self._end(rec)

    def _msg_abort(self, content: dict[str, Any], buffers: list[Any]) -> None:
        rec = self._current(content)
        message = str(content.get("message") or "The browser could not record.")
        logger.info("recording aborted by the browser (%s): %s", content.get("kind"), message)
        self._finish(rec, error=message, cancel=True)

    # -- session lifecycle ------------------------------------------------------------

    def _begin(self, session_id: str, view: str, config: SonioxConfig) -> _Recording:
        backend = self._backend or self._resolve_backend()
        if backend is None:
            self.send({"type": "rejected", "view": view, "session": session_id,
                       "reason": self.error})
            raise MissingAPIKeyError(self.error)
        upstream = UpstreamSession(config, api_key=backend.api_key, url=backend.url)
        rec = _Recording(session_id, view, upstream, self.keep_audio)
        self._recording = rec
        if self.clear_on_start:
            self._clear()
        self.error = ""
        self.active_view = view
        self.status = "connecting"
        rec.task = self._loop.create_task(self._run(rec), name=f"soniox-recorder {session_id}")
        return rec

    async def _run(self, rec: _Recording) -> None:
        upstream = rec.upstream
        try:
            async with upstream:
                waiter = asyncio.ensure_future(upstream.wait_connected())
                consumer = asyncio.ensure_future(self._consume(rec))
                try:
                    await waiter
                    if self._recording is rec and self.status == "connecting":
                        self.status = "recording"
                    await consumer
                finally:
                    for t in (waiter, consumer):
                        t.cancel()
                    await asyncio.gather(waiter, consumer, return_exceptions=True)
        except SonioxError as exc:
            self._finish(rec, error=_friendly(exc, self._backend), exc=exc)
            return
        except asyncio.CancelledError:
            self._finish(rec, error=None)
            raise
        except Exception as exc:  # keep the kernel side alive whatever happens
            logger.exception("recorder session crashed")
            self._finish(rec, error=f"Internal error: {exc}")
            return
        self._finish(rec, error=None)

    async def _consume(self, rec: _Recording) -> None:
        async for reply in rec.upstream.replies():
            self._apply(reply)

    def _apply(self, reply: Reply) -> None:
        delta = self.transcript.apply(reply)
        if not delta:
            return
        if delta.final_tokens:
            self.tokens = [*self.tokens, *self.transcript.token_dicts(delta.final_tokens)]
            self.final_text = self.transcript.final_text
        self.nonfinal_text = self.transcript.nonfinal_text
        base, self._rev = self._rev, self._rev + 1
        self._send_view({
            "type": "delta",
            "rev": self._rev,
            "base_rev": base,
            "final": [s.to_json() for s in segments_of(delta.final_tokens)],
            "nonfinal": [s.to_json() for s in segments_of(self.transcript.nonfinal_tokens)],
        })

    def _end(self, rec: _Recording) -> None:
        if not rec.upstream.ended and rec.upstream.error is None:
            rec.upstream.end()
        if self._recording is rec and self.status in BUSY:
            self.status = "finishing"

    def _finish(self, rec: _Recording, *, error: str | None, cancel: bool = False,
                exc: SonioxError | None = None) -> None:
        if rec.done.is_set():
            return
        rec.error = exc or (SonioxError(error, reason="closed") if error else None)
        rec.done.set()
        if cancel and rec.task is not None and not rec.task.done():
            rec.task.cancel()
        if self._recording is rec:
            self._recording = None
            self._last_recording = rec
            self.active_view = ""
            if error:
                self.error = error
                self.status = "error"
                self._send_view({"type": "stop_request"})
            else:
                self.status = "idle"

    def _clear(self) -> None:
        self.transcript = Transcript()
        self.tokens = []
        self.final_text = ""
        self.nonfinal_text = ""
        self._rev += 1
        self._send_view({"type": "clear", "rev": self._rev})

    # -- kernel → views -------------------------------------------------------------

    def _send_view(self, message: dict[str, Any]) -> None:
        self.bytes_sent_to_views += len(json.dumps(message))
        self.send(message)

    def _send_snapshot(self) -> None:
        self._send_view({
            "type": "snapshot",
            "rev": self._rev,
            "segments": [s.to_json() for s in self.transcript.segments()],
            "nonfinal": [s.to_json() for s in segments_of(self.transcript.nonfinal_tokens)],
        })

    # -- Python control -------------------------------------------------------------

    @property
    def is_busy(self) -> bool:
        return self._recording is not None

    @property
    def last_audio(self) -> bytes:
        """The audio of the current (or last) recording, exactly as sent upstream.

        From the browser it is a webm/opus (or ogg/mp4) file; ``save_audio`` writes it.
        """
        rec = self._recording or self._last_recording
        return bytes(rec.audio) if rec is not None and rec.audio is not None else b""

    def save_audio(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`last_audio` to ``path`` (e.g. ``"take1.webm"``)."""
        data = self.last_audio
        if not data:
            raise SonioxWidgetError("no audio recorded yet (or keep_audio=False)")
        out = Path(path)
        out.write_bytes(data)
        return out

    @property
    def audio_stats(self) -> dict[str, int]:
        """Chunks and bytes received for the current (or last) recording, and bytes the
        upstream session sent on: equal once a recording has finished."""
        rec = self._recording or self._last_recording
        if rec is None:
            return {"chunks": 0, "bytes": 0, "bytes_sent_upstream": 0}
        return {"chunks": rec.next_seq, "bytes": rec.bytes_in,
                "bytes_sent_upstream": rec.upstream.bytes_sent}

    def stop(self) -> None:
        """Stop the current recording: the browser sends its last chunk, then the end.

        The transcript is complete once ``status`` is ``"idle"`` again (see
        :meth:`wait_until_idle`).
        """
        rec = self._recording
        if rec is None:
            return
        if rec.view == PYTHON_VIEW:
            self._end(rec)
        else:
            self._send_view({"type": "stop_request"})
            if self.status in BUSY:
                self.status = "finishing"

    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Make everything heard so far final now (the service answers with ``<fin>``)."""
        rec = self._recording
        if rec is None or rec.upstream.ended or rec.upstream.error is not None:
            logger.info("finalize ignored: nothing is recording")
            return
        rec.upstream.finalize(trailing_silence_ms)

    async def wait_until_idle(self, timeout: float | None = None) -> Transcript:
        """Wait until the current recording (if any) has finished; return the transcript.

        Use it in an ``async`` cell (``await rec.wait_until_idle()``): a cell that blocks
        the kernel's loop would also block the messages that carry the audio.
        Raises :class:`SonioxError` if the recording ended with an error.
        """
        rec = self._recording or self._last_recording
        if rec is not None:
            await asyncio.wait_for(rec.done.wait(), timeout)
            if rec.error is not None:
                raise rec.error
        return self.transcript

    def feed(self, data: bytes | bytearray | memoryview, *, audio_format: str | None = None,
             sample_rate: int | None = None, num_channels: int | None = None) -> None:
        """Push audio from Python through the widget's own path (starts a session if none).

        Call :meth:`stop` after the last chunk. The first call fixes the format:
        container audio (default, ``audio_format="auto"``) or raw PCM with
        ``sample_rate`` and ``num_channels``.
        """
        rec = self._recording
        if rec is None:
            changes = {k: v for k, v in (("audio_format", audio_format),
                                         ("sample_rate", sample_rate),
                                         ("num_channels", num_channels)) if v is not None}
            config = self.config.replace(**changes) if changes else self.config
            rec = self._begin(os.urandom(8).hex(), PYTHON_VIEW, config)
        elif rec.view != PYTHON_VIEW:
            raise SonioxError("the microphone is recording in the widget; stop it first",
                              reason="closed")
        if rec.upstream.ended:
            raise SonioxError("this recording was stopped; wait_until_idle() then feed again",
                              reason="closed")
        self._forward(rec, bytes(data))

    def transcribe_file(self, path: str | os.PathLike[str], *, realtime: bool = True
                        ) -> asyncio.Task[Transcript]:
        """Push a file's audio through the widget, live, as if spoken; returns a task.

        The traits and the view update while it runs. In a notebook: ``await
        rec.transcribe_file("speech.wav")`` gives the :class:`Transcript`; without
        ``await`` it runs on in the background after the cell ends.
        ``realtime=False`` sends the audio as fast as the engine takes it: quicker with
        the local engine, which then decodes in bigger steps (fewer, later updates).
        Soniox expects real-time pace and may cut a long burst short.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no audio file at {file}; check the path")
        if self._recording is not None:
            raise SonioxError("a recording is in progress; stop it first", reason="closed")
        return self._loop.create_task(self._transcribe_file(file, realtime))

    async def _transcribe_file(self, file: Path, realtime: bool) -> Transcript:
        data, seconds = await read_audio_file(file)
        async for piece in paced_chunks(data, seconds, realtime):
            self.feed(piece)
            rec = self._recording
            if rec is None or rec.upstream.error is not None:
                break
        self.stop()
        return await self.wait_until_idle()

    def close(self) -> None:
        """Close the widget; ends any recording at once (nothing keeps running)."""
        rec = getattr(self, "_recording", None)  # None if __init__ failed half-way
        if rec is not None:
            # Cancelling the task closes its upstream session (``async with``).
            self._finish(rec, error=None, cancel=True)
        super().close()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()
