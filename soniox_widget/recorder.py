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

The jobs are split by module: ``view_messages`` parses and builds the messages
exchanged with the views, ``recording`` supervises one recording (chunk order,
the source's liveness, stop), ``upstream`` runs the session; this class is the
public API and the traits.

Example::

    rec = SonioxRecorder(language_hints=["en"])
    rec                                   # shows the widget; click Record
    rec.observe(lambda ch: print(ch["new"]), names="final_text")
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anywidget
import traitlets

from . import view_messages as vm
from .audio_taps import AudioTaps, format_of
from .backend import Backend, choose_backend, is_soniox_host
from .config import SonioxConfig
from .errors import ConfigError, SessionClosedError, SonioxError, SonioxWidgetError, user_message
from .headless import paced_chunks, read_audio_file
from .protocol import Reply
from .recording import PYTHON_VIEW, Recording
from .redaction import redact
from .session import SessionState
from .transcript import Transcript, Utterance, segments_of
from .upstream import UpstreamSession

logger = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "static"


def _front_end(name: str) -> str | Path:
    """The view's file: a path anywidget hot-reloads under ``ANYWIDGET_HMR=1`` (for
    developing the front end; every recorder then stays in memory), else its text."""
    path = _STATIC / name
    return path if os.environ.get("ANYWIDGET_HMR") == "1" else path.read_text("utf-8")


#: The widget's ``status`` for each state of the upstream session.
STATUS_OF_STATE = {
    SessionState.NEW: "connecting",
    SessionState.CONNECTING: "connecting",
    SessionState.STREAMING: "recording",
    SessionState.PAUSED: "paused",
    SessionState.RECONNECTING: "reconnecting",
    SessionState.FINISHING: "finishing",
}
BUSY = vm.BUSY


def engine_kind(backend: Backend | None) -> str:
    """What the view's badge says the engine is: ``local`` (the offline engine),
    ``soniox``, ``server`` (another Soniox-compatible URL), or ``""`` (none)."""
    if backend is None:
        return ""
    if backend.is_local:
        return "local"
    if backend.fixed_url and is_soniox_host(urlsplit(backend.fixed_url).hostname):
        return "soniox"
    return "server"


def _friendly(exc: BaseException, backend: Backend | None) -> str:
    """An error message that says what to do next (:func:`.errors.user_message`)."""
    return user_message(exc, backend.label if backend else None)


def _on_widget_loop(method: Callable[..., None]) -> Callable[..., None]:
    """Run a control method on the widget's own loop.

    Called from another thread (a subshell, a button callback, a worker), it is
    handed over to that loop instead of touching its timers and events from here;
    it then returns at once, and an error it raises there is logged.
    """
    @functools.wraps(method)
    def wrapper(self: SonioxRecorder, *args: Any, **kwargs: Any) -> None:
        if _on_loop(self._loop) or not self._loop.is_running():
            return method(self, *args, **kwargs)
        if args and isinstance(args[0], (memoryview, bytearray)):
            args = (bytes(args[0]), *args[1:])  # the caller may reuse its buffer

        def call() -> None:
            try:
                method(self, *args, **kwargs)
            except Exception:
                logger.exception("SonioxRecorder.%s failed", method.__name__)

        self._loop.call_soon_threadsafe(call)
        return None

    return wrapper


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
        reconnect: a :class:`~soniox_widget.session.ReconnectPolicy` (default: up to
            3 tries in 30 s after a dropped connection).
        **options: :class:`SonioxConfig` options (``language_hints=["en"]``, ...).

    Traits you can observe: ``status`` (idle, connecting, recording, paused,
    reconnecting, finishing, error), ``final_text``, ``nonfinal_text``, ``tokens``
    (list of dicts), ``error``, ``saved_transcript`` (the last finished recording),
    ``device`` (the chosen microphone's name; empty: the default one).
    """

    # The front end as text, read once. Given a path, anywidget watches the file and
    # connects a closure over every instance to its change signal, so no recorder is
    # ever freed (anywidget issue 929); that reload is wanted only while developing.
    _esm = _front_end("widget.js")
    _css = _front_end("widget.css")

    # Synced: small, bounded state the view renders directly.
    status = traitlets.Enum(vm.STATUSES, default_value="idle").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    engine_label = traitlets.Unicode("").tag(sync=True)
    #: ``local``, ``soniox``, ``server`` or ``""``: the view styles its badge by it.
    engine_kind = traitlets.Unicode("").tag(sync=True)
    active_view = traitlets.Unicode("").tag(sync=True)
    audio_bits_per_second = traitlets.Int(32000).tag(sync=True)
    timeslice_ms = traitlets.Int(120).tag(sync=True)
    #: The last finished recording: ``text`` (its final text), ``segments``,
    #: ``translation``, each bounded to the last ``view_messages.SAVED_TEXT_LIMIT``
    #: characters (``truncated`` then True). Synced once per recording, not per reply,
    #: so a saved notebook or an HTML export still shows it. It is set by the kernel when
    #: the recording ends, and then again, to the same value, by the view that drove it:
    #: marimo re-runs the cells reading ``mo.ui.anywidget(rec).value`` only on changes
    #: that come from the browser.
    saved_transcript = traitlets.Dict().tag(sync=True)
    #: The microphone chosen in the view (its name; ``""``: the browser's default) and
    #: the browser's id for it. Kept for the next recording and shared by all views.
    device = traitlets.Unicode("").tag(sync=True)
    device_id = traitlets.Unicode("").tag(sync=True)

    # Observable in Python; the view gets them as deltas (see the module docstring).
    final_text = traitlets.Unicode("")
    nonfinal_text = traitlets.Unicode("")
    tokens = traitlets.List()  # of token dicts; no per-item validation (it grows long)
    translation_text = traitlets.Unicode("")
    nonfinal_translation_text = traitlets.Unicode("")
    utterances = traitlets.List()  # of utterance dicts, one added per completed utterance

    #: Seconds a recording view may stay silent (no chunk, no heartbeat) before its
    #: session is ended; views send a heartbeat every 2 s.
    view_grace = 10.0
    #: Seconds :meth:`stop` waits for the view's last chunk before ending the session.
    stop_grace = 5.0

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
        reconnect: Any = None,
        **options: Any,
    ) -> None:
        # Validate everything before the widget exists, so a typo fails at once.
        self.config = SonioxConfig.from_options(options)
        if not 20 <= timeslice_ms <= 1000:
            raise ConfigError("timeslice_ms must be between 20 and 1000 (120 is a good value)")
        super().__init__(audio_bits_per_second=audio_bits_per_second, timeslice_ms=timeslice_ms)
        self.clear_on_start = clear_on_start
        self.keep_audio = keep_audio
        self.reconnect = reconnect
        self._engine_choice = engine
        self._url = url
        self._api_key = api_key  # private attribute; never a trait, never shown
        self._backend: Backend | None = None
        self.transcript = Transcript()
        self._rev = 0
        self._recording: Recording | None = None
        self._last_recording: Recording | None = None
        self._python_failure: SonioxError | None = None
        self._utterance_callbacks: list[Callable[[Utterance], object]] = []
        self._taps = AudioTaps()
        self.bytes_sent_to_views = 0
        # Every session task, queue and trait change of this widget lives on the loop of
        # the thread that created it (a notebook's main thread). ipykernel 7 may hand
        # comm messages to a subshell thread with a loop of its own; they are passed
        # over to this loop rather than touching its objects from another thread.
        self._loop = _loop()
        self._resolve_backend()
        self.on_msg(self._receive_from_front_end)

    @traitlets.validate("error")
    def _redacted_error(self, proposal: Any) -> str:
        # Saved with the notebook and shown in the page: never a secret.
        return redact(proposal["value"])

    @traitlets.validate("saved_transcript")
    def _bounded_saved_transcript(self, proposal: Any) -> dict[str, Any]:
        # A view sets it too: whatever it sends is checked and bounded like our own.
        return vm.bound_saved_transcript(proposal["value"])

    @traitlets.validate("device", "device_id")
    def _short_device(self, proposal: Any) -> str:
        value = proposal["value"]
        return value[:300] if isinstance(value, str) else ""

    def __repr__(self) -> str:
        # A recorder shown before any recording in this kernel (a reopened notebook whose
        # saved state came back) still names the last transcript it holds.
        text = self.final_text or str(self.saved_transcript.get("text", ""))
        return (f"SonioxRecorder(status={self.status!r}, engine={self.engine_label!r}, "
                f"final_text={text[-60:]!r})")

    # -- backend ---------------------------------------------------------------------

    def _resolve_backend(self) -> Backend | None:
        try:
            self._backend = choose_backend(self._engine_choice, api_key=self._api_key,
                                           url=self._url, model=self.config.model)
        except (SonioxWidgetError, RuntimeError) as exc:
            self._backend = None
            self.engine_label = "no engine"
            self.engine_kind = ""
            self.error = str(exc)
            self.status = "error"
            return None
        self.engine_label = self._backend.label
        self.engine_kind = engine_kind(self._backend)
        if self.status == "error" and self._recording is None:
            self.error = ""
            self.status = "idle"
        return self._backend

    # -- front end → kernel ----------------------------------------------------------

    def _receive_from_front_end(self, widget: Any, content: Any, buffers: list[Any]) -> None:
        """Comm callback, on whichever thread the kernel handles comm messages."""
        data = [bytes(b) for b in buffers or []]  # the kernel may reuse the buffers
        if _on_loop(self._loop):
            self._on_front_end_message(content, data)
        else:
            self._loop.call_soon_threadsafe(self._on_front_end_message, content, data)

    def _on_front_end_message(self, content: Any, buffers: list[bytes]) -> None:
        """Never raises: a bad message is logged and dropped, the kernel side lives on."""
        try:
            message = vm.parse_view_message(content, buffers)
            if isinstance(message, vm.Start):
                self._view_start(message)
            elif isinstance(message, vm.SnapshotRequest):
                self._send_snapshot()
            elif isinstance(message, vm.ViewError):
                logger.warning("widget view error: %s", message.message)
            elif isinstance(message, vm.Unavailable):
                # The same advice as the page shows, for code reading rec.error. The
                # status stays as it is: other views (or rec.feed) may still record.
                logger.info("a view cannot record (%s): %s", message.kind, message.message)
                if self._recording is None:
                    self.error = message.message
            elif isinstance(message, vm.Finalize):
                self.finalize()
            else:
                self._view_session_message(message)
        except Exception as exc:
            logger.warning("SonioxRecorder ignored a front-end message: %s", exc)

    def _view_start(self, message: vm.Start) -> None:
        if self._recording is not None:
            self.send(vm.rejected(message.view, message.session,
                                  "Another view of this recorder is recording; stop it first."))
            return
        # The browser always sends a container format; let the service detect it.
        config = self.config.replace(audio_format="auto") if self.config.is_raw_audio \
            else self.config
        try:
            self._begin(message.session, message.view, config)
        except SonioxWidgetError as exc:
            self.send(vm.rejected(message.view, message.session, str(exc)))

    def _view_session_message(self, message: Any) -> None:
        rec = self._recording
        if rec is None or message.session != rec.id:
            if rec is None and isinstance(message, (vm.Heartbeat, vm.Chunk)):
                # In flight when the session ended (an error, a vanished view): expected.
                logger.debug("late %s for session %r", type(message).__name__,
                             message.session)
                return
            raise ValueError(f"{type(message).__name__.lower()} message for session "
                             f"{message.session!r}, which is not recording (late or stray)")
        if isinstance(message, vm.Chunk):
            rec.chunk(message.seq, message.data)
        elif isinstance(message, vm.Stop):
            rec.stop_from_view(message.chunks)
        elif isinstance(message, vm.Abort):
            logger.info("recording aborted by the browser (%s): %s", message.kind,
                        message.message)
            rec.abort(SessionClosedError(message.message))
        elif isinstance(message, vm.Pause):
            rec.pause()
        elif isinstance(message, vm.Resume):
            rec.resume()
        elif isinstance(message, vm.Heartbeat):
            rec.seen()

    # -- session lifecycle ------------------------------------------------------------

    def _begin(self, session_id: str, view: str, config: SonioxConfig) -> Recording:
        backend = self._backend or self._resolve_backend()
        if backend is None:
            raise SonioxWidgetError(self.error)
        upstream = UpstreamSession(config, backend=backend, reconnect=self.reconnect,
                                   on_state=self._on_session_state)
        if self.clear_on_start:
            self._clear()
        self.error = ""
        self.active_view = view
        self.status = "connecting"
        rec = Recording(session_id, view, upstream, config=config,
                        keep_audio=self.keep_audio, on_reply=self._apply, on_done=self._done,
                        tap=self._taps.open(config, self._loop),
                        view_grace=self.view_grace, stop_grace=self.stop_grace)
        self._recording = rec
        if view == PYTHON_VIEW:
            self._python_failure = None
        return rec

    def _on_session_state(self, state: SessionState) -> None:
        status = STATUS_OF_STATE.get(state)
        if status is not None and self._recording is not None:
            self.status = status

    def _done(self, rec: Recording) -> None:
        if self._recording is not rec:
            return
        self._recording = None
        self._last_recording = rec
        self.active_view = ""
        t = self.transcript
        # Before the status: views learn the saved text first (one ordered channel), so
        # the one that drove the recording can set it again from the browser.
        self.saved_transcript = vm.saved_transcript(t.segments(), t.translation_text)
        if rec.error is not None:
            rec.error.partial = t.final_part()  # what was final is not lost with it
            if rec.view == PYTHON_VIEW:
                self._python_failure = rec.error
            self.error = _friendly(rec.error, self._backend)
            self.status = "error"
            self._send_view(vm.stop_request())  # the browser lets go of the microphone
        else:
            self.status = "idle"

    def _apply(self, reply: Reply) -> None:
        t = self.transcript
        delta = t.apply(reply)
        if not delta:
            return
        if delta.final_tokens:
            self.tokens = [*self.tokens, *t.token_dicts(delta.final_tokens)]
            self.final_text = t.final_text
        self.nonfinal_text = t.nonfinal_text
        translated = bool(delta.final_translation_tokens or delta.nonfinal_translation_changed)
        if translated:
            self.translation_text = t.translation_text
            self.nonfinal_translation_text = t.nonfinal_translation_text
        base, self._rev = self._rev, self._rev + 1
        self._send_view(vm.delta(
            self._rev, base, segments_of(delta.final_tokens), segments_of(t.nonfinal_tokens),
            translation=delta.final_translation_text,
            nonfinal_translation=t.nonfinal_translation_text if translated else None))
        if delta.utterances:
            self.utterances = [*self.utterances, *(u.to_json() for u in delta.utterances)]
            for utterance in delta.utterances:
                for callback in list(self._utterance_callbacks):
                    self._taps.call_safely(callback, utterance, "on_utterance")

    def _clear(self) -> None:
        self.transcript = Transcript()
        self.tokens = []
        self.final_text = ""
        self.nonfinal_text = ""
        self.translation_text = ""
        self.nonfinal_translation_text = ""
        self.utterances = []
        self._rev += 1
        self._send_view(vm.clear(self._rev))

    # -- kernel → views -------------------------------------------------------------

    def _send_view(self, message: dict[str, Any]) -> None:
        self.bytes_sent_to_views += len(json.dumps(message))
        self.send(message)

    def _send_snapshot(self) -> None:
        t = self.transcript
        self._send_view(vm.snapshot(self._rev, t.segments(), segments_of(t.nonfinal_tokens),
                                    t.translation_text, t.nonfinal_translation_text))

    # -- Python control -------------------------------------------------------------

    @property
    def is_busy(self) -> bool:
        return self._recording is not None

    @property
    def last_audio(self) -> bytes:
        """The audio of the current (or last) recording, exactly as the source gave it.

        From the browser it is a webm/opus (or ogg/mp4) file; ``save_audio`` writes it.
        """
        rec = self._recording or self._last_recording
        return bytes(rec.audio) if rec is not None and rec.audio is not None else b""

    def _last_audio_and_format(self) -> tuple[bytes, dict[str, Any]]:
        rec = self._recording or self._last_recording
        data = self.last_audio
        if not data:
            raise SonioxWidgetError("no audio recorded yet (or keep_audio=False)")
        config = rec.config if rec is not None else self.config
        return data, format_of(config)

    def save_audio(self, path: str | os.PathLike[str]) -> Path:
        """Write the last recording to ``path``, chosen by its suffix.

        The suffix of the audio's own container (``.webm`` from the browser) keeps the
        bytes exactly as transcribed; ``.wav`` and ``.flac`` are transcoded (PyAV).
        Example: ``rec.save_audio("take1.webm")``, ``rec.save_audio("take1.wav")``.
        """
        from .audio import write_audio

        data, fmt = self._last_audio_and_format()
        return write_audio(data, path, **fmt)

    def audio_array(self, sample_rate: int = 16000) -> Any:
        """The last recording as a 1-D float32 NumPy array at ``sample_rate`` (mono).

        Example: ``samples = rec.audio_array(); len(samples) / 16000`` is its length in
        seconds; plot it, or hand it to another model.
        """
        from .audio import decode_bytes

        data, fmt = self._last_audio_and_format()
        return decode_bytes(data, sample_rate, **fmt)

    def on_audio(self, callback: Callable[[Any], object], *, pcm: bool = False,
                 remove: bool = False) -> None:
        """Call ``callback`` with each chunk of audio as it goes to the service.

        With ``pcm=False`` it gets the bytes as the source gave them (the browser's
        webm/opus); with ``pcm=True``, float32 16 kHz mono NumPy arrays decoded in the
        kernel. It runs on the notebook's event loop; keep it quick. One that raises is
        reported once in the log and never stops the recording. Takes effect from the
        next recording; ``remove=True`` unregisters it.
        """
        if remove:
            self._taps.remove(callback)
        else:
            self._taps.add(callback, pcm=pcm)

    def on_utterance(self, callback: Callable[[Utterance], object], *,
                     remove: bool = False) -> None:
        """Call ``callback`` with each :class:`~soniox_widget.transcript.Utterance` once it
        is complete (an endpoint, a change of speaker, or a pause); ``remove=True``
        unregisters it. The same utterances are appended to the ``utterances`` trait."""
        if remove:
            self._utterance_callbacks = [c for c in self._utterance_callbacks
                                         if c is not callback]
        else:
            self._utterance_callbacks.append(callback)

    @property
    def audio_stats(self) -> dict[str, int]:
        """Chunks and bytes received for the current (or last) recording, bytes the
        upstream session sent on (equal once a recording has finished without a
        reconnect; a reconnect resends the audio that was not final yet), and the
        number of upstream connections it opened."""
        rec = self._recording or self._last_recording
        if rec is None:
            return {"chunks": 0, "bytes": 0, "bytes_sent_upstream": 0, "connections": 0}
        return rec.stats()

    @_on_widget_loop
    def stop(self) -> None:
        """Stop the current recording: the browser sends its last chunk, then the end.

        If the browser does not answer within :attr:`stop_grace` seconds (a closed
        tab), the session is ended from the kernel. The transcript is complete once
        ``status`` is ``"idle"`` again (see :meth:`wait_until_idle`).
        """
        rec = self._recording
        if rec is None or rec.ended:
            return
        if rec.from_view:
            self._send_view(vm.stop_request())
            rec.request_stop()
        else:
            rec.end("stop")
        if self.status in BUSY:
            self.status = "finishing"

    @_on_widget_loop
    def pause(self) -> None:
        """Pause the current recording: no audio is sent, the session stays open
        (keepalives), and :meth:`resume` continues the same transcript."""
        rec = self._recording
        if rec is None or rec.ended:
            raise SonioxWidgetError("nothing is recording; there is nothing to pause")
        if rec.from_view:
            self._send_view(vm.pause_request())
        rec.pause()

    @_on_widget_loop
    def resume(self) -> None:
        """Continue a paused recording in the same session."""
        rec = self._recording
        if rec is None or rec.ended:
            raise SonioxWidgetError("nothing is recording; there is nothing to resume")
        if rec.from_view:
            self._send_view(vm.resume_request())
        rec.resume()

    @_on_widget_loop
    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Make everything heard so far final now (the service answers with ``<fin>``)."""
        rec = self._recording
        if rec is None or rec.ended:
            logger.info("finalize ignored: nothing is recording")
            return
        rec.finalize(trailing_silence_ms)

    async def wait_until_idle(self, timeout: float | None = None) -> Transcript:
        """Wait until the current recording (if any) has finished; return the transcript.

        Use it in an ``async`` cell (``await rec.wait_until_idle()``): a cell that blocks
        the kernel's loop would also block the messages that carry the audio.
        Raises :class:`SonioxError` if the recording ended with an error.
        """
        rec = self._recording or self._last_recording
        if rec is not None:
            # asyncio.wait, not wait_for: on Python 3.10/3.11 wait_for can swallow a
            # cancel that arrives as the recording ends.
            waiter = asyncio.ensure_future(rec.done.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()
            if not done:
                raise TimeoutError(f"the recording did not finish within {timeout:g} s; it "
                                   "goes on (check rec.status), or call rec.stop()")
            if rec.error is not None:
                raise rec.error
        return self.transcript

    def start(self, *, audio_format: str | None = None, sample_rate: int | None = None,
              num_channels: int | None = None) -> None:
        """Open a session for audio pushed from Python with :meth:`feed`.

        Container audio by default (``audio_format="auto"``), or raw PCM with
        ``sample_rate`` and ``num_channels``. :meth:`feed` calls it for you, except
        after a failed recording: then nothing reconnects behind your back until you
        call ``start()`` again.
        """
        if self._recording is not None:
            raise SessionClosedError("a recording is in progress; stop it first")
        changes = {k: v for k, v in (("audio_format", audio_format),
                                     ("sample_rate", sample_rate),
                                     ("num_channels", num_channels)) if v is not None}
        config = self.config.replace(**changes) if changes else self.config
        self._begin(os.urandom(8).hex(), PYTHON_VIEW, config)

    @_on_widget_loop
    def feed(self, data: bytes | bytearray | memoryview, *, audio_format: str | None = None,
             sample_rate: int | None = None, num_channels: int | None = None) -> None:
        """Push audio from Python through the widget's own path; call :meth:`stop` after
        the last chunk.

        The first call starts a session (see :meth:`start` for the format options).
        After a failure it raises the failure instead: call :meth:`start` to begin anew.

        It never waits: while the service is away (connecting, reconnecting) the audio
        queues in memory, and after a reconnect only the last ``max_resend_seconds``
        (60 s) of audio whose words were not final are sent again; older audio is never
        transcribed (a warning is logged). A producer that can wait (a file, a
        generator) should ``await`` :meth:`feed_async` instead.
        """
        rec = self._recording
        if rec is None:
            if self._python_failure is not None:
                failure = SessionClosedError(
                    f"the last recording failed ({self._python_failure}); nothing was sent. "
                    "Call rec.start() to begin a new recording, then feed again.")
                failure.partial = self._python_failure.partial
                raise failure
            self.start(audio_format=audio_format, sample_rate=sample_rate,
                       num_channels=num_channels)
            rec = self._recording
            assert rec is not None
        elif rec.from_view:
            raise SessionClosedError("the microphone is recording in the widget; stop it first")
        if rec.paused:
            raise SessionClosedError("the recording is paused; call rec.resume() first")
        rec.feed(bytes(data))

    async def feed_async(self, data: bytes | bytearray | memoryview, *,
                         audio_format: str | None = None, sample_rate: int | None = None,
                         num_channels: int | None = None) -> None:
        """:meth:`feed`, then wait while the service is not taking audio (connecting,
        reconnecting, or its connection's buffer is full): back-pressure for producers
        that can wait, so nothing piles up in memory or outruns what a reconnect can
        resend.

        Example::

            async for chunk in source:        # an async generator of PCM bytes
                await rec.feed_async(chunk, audio_format="pcm_s16le",
                                     sample_rate=16000, num_channels=1)
            rec.stop()
        """
        self.feed(data, audio_format=audio_format, sample_rate=sample_rate,
                  num_channels=num_channels)
        if (rec := self._recording) is not None:
            await rec.wait_for_room()

    def transcribe_file(self, path: str | os.PathLike[str], *, realtime: bool = True
                        ) -> asyncio.Task[Transcript]:
        """Push a file's audio through the widget, live, as if spoken; returns a task.

        The traits and the view update while it runs. In a notebook: ``await
        rec.transcribe_file("speech.wav")`` gives the :class:`Transcript`; without
        ``await`` it runs on in the background after the cell ends. :meth:`pause`
        and :meth:`resume` work on it too.
        ``realtime=False`` sends the audio as fast as the engine takes it: quicker with
        the local engine, which then decodes in bigger steps (fewer, later updates).
        Soniox expects real-time pace and may cut a long burst short.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no audio file at {file}; check the path")
        if self._recording is not None:
            raise SessionClosedError("a recording is in progress; stop it first")
        self.start()
        return self._loop.create_task(self._transcribe_file(file, realtime))

    async def _transcribe_file(self, file: Path, realtime: bool) -> Transcript:
        rec = self._recording
        assert rec is not None
        try:
            data, seconds = await read_audio_file(file)
        except Exception:
            rec.cancel()
            raise
        async for piece in paced_chunks(data, seconds, realtime, wait=rec.resumed.wait):
            if rec.ended:
                break  # failed or closed: wait_until_idle raises why
            rec.feed(piece)
            await rec.wait_for_room()
        if not rec.ended:
            rec.end("stop")
        await rec.done.wait()
        if rec.error is not None:
            raise rec.error
        return self.transcript

    def close(self) -> None:
        """Close the widget; ends any recording at once (nothing keeps running), and
        lets go of what it registered, so a closed recorder can be freed."""
        rec = getattr(self, "_recording", None)  # None if __init__ failed half-way
        if rec is not None:
            rec.cancel()  # the task closes its upstream session
        if getattr(self, "_taps", None) is None:  # __init__ failed before the widget was
            super().close()                       # made: nothing else was registered
            return
        self.on_msg(self._receive_from_front_end, remove=True)
        self._utterance_callbacks.clear()
        self._taps.clear()
        # Every DOMWidget makes a Layout widget of its own, which stays in the widget
        # registry (and keeps its comm open) until it is closed too.
        layout = self.layout
        super().close()
        if layout is not None:
            layout.close()


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
