"""One recording of the widget, supervised: chunk order, the source's liveness, stop.

A :class:`Recording` sits between a source (a browser view, or Python code calling
``feed``) and its :class:`~soniox_widget.upstream.UpstreamSession`. It puts the
view's numbered chunks back in order, keeps the audio if asked, and makes sure
the session ends however the source goes away:

* a view that stops sending anything (tab closed, comm gone) for ``view_grace``
  seconds ends the session (its words are kept). Views send a heartbeat every
  2 s, also while paused. A cell that blocks the kernel's loop does not count as
  silence: when the watchdog fires late, the loop was busy, and it waits again;
* ``request_stop`` asks the view to stop, and ends the upstream itself if the
  view's own stop has not come within ``stop_grace`` seconds.

One timer serves both deadlines; it is re-armed only when it fires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._deadline import DeadlineTimer
from .audio_taps import Tap
from .config import SonioxConfig
from .errors import ProtocolViolationError, SessionClosedError, SonioxError
from .protocol import Reply
from .upstream import UpstreamSession

logger = logging.getLogger(__name__)

#: Chunks that arrived ahead of a missing one, held until the gap is filled.
MAX_HELD_CHUNKS = 64
PYTHON_VIEW = "python"
#: A watchdog that fires this much later than due means the loop was blocked.
_LATE = 1.0


class Recording:
    """One start → finished recording; the widget owns it (see the module docstring).

    Every field is declared here (``__slots__``): the widget acts on a recording through
    its methods, and nobody attaches fields to it from outside.
    """

    __slots__ = (
        "_deadline",
        "_last_seen",
        "_loop",
        "_on_done",
        "_on_reply",
        "_reply_failure_logged",
        "_stop_due",
        "_tap",
        "audio",
        "bytes_in",
        "config",
        "done",
        "ended_by",
        "error",
        "held",
        "id",
        "next_seq",
        "resumed",
        "stop_grace",
        "task",
        "upstream",
        "view",
        "view_grace",
    )

    def __init__(
        self,
        session_id: str,
        view: str,
        upstream: UpstreamSession,
        *,
        config: SonioxConfig,
        keep_audio: bool,
        on_reply: Callable[[Reply], None],
        on_done: Callable[[Recording], None],
        tap: Tap | None = None,
        view_grace: float = 10.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.id = session_id
        self.view = view
        #: The options this recording was made with (how to read its audio later).
        self.config = config
        self.upstream = upstream
        self.next_seq = 0
        self.held: dict[int, bytes] = {}
        self.bytes_in = 0
        self.audio = bytearray() if keep_audio else None
        self.error: SonioxError | None = None
        self.done = asyncio.Event()
        self.ended_by: str | None = None  # why the upstream was ended: stop, view_gone, ...
        self.resumed = asyncio.Event()
        self.resumed.set()
        self._on_reply = on_reply
        self._on_done = on_done
        self._tap = tap
        self.view_grace = view_grace
        self.stop_grace = stop_grace
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._stop_due: float | None = None
        self._deadline = DeadlineTimer(self._loop, self._due, self._fire)
        # The upstream starts inside the task (``async with``); until then it queues
        # audio and commands. A task cancelled before its first step never runs its
        # body, so the done-callback makes sure the recording still ends.
        self.task: asyncio.Task[None] = self._loop.create_task(
            self._run(), name=f"soniox-recording {session_id}")
        self.task.add_done_callback(self._task_done)
        self._reply_failure_logged = False
        if self.from_view:
            self._deadline.arm()

    @property
    def from_view(self) -> bool:
        return self.view != PYTHON_VIEW

    @property
    def ended(self) -> bool:
        return self.upstream.ended or self.done.is_set()

    # -- the source ---------------------------------------------------------------------

    def seen(self) -> None:
        """Any message from the view proves it is alive."""
        self._last_seen = self._loop.time()

    def chunk(self, seq: int, data: bytes) -> None:
        """A numbered chunk from the view, in whatever order it came."""
        self.seen()
        if seq < self.next_seq or seq in self.held:
            raise ValueError(f"chunk {seq} arrived twice or out of order (expected "
                             f"{self.next_seq}); dropped the duplicate")
        if seq > self.next_seq:
            if len(self.held) >= MAX_HELD_CHUNKS:
                raise ValueError(f"chunk {self.next_seq} never arrived; dropping chunk {seq}")
            logger.warning("chunk %d arrived before chunk %d; holding it", seq, self.next_seq)
            self.held[seq] = data
            return
        self._forward(data)
        while self.next_seq in self.held:
            self._forward(self.held.pop(self.next_seq))

    def feed(self, data: bytes) -> None:
        """Audio from Python (no numbering: calls are already in order)."""
        if self.upstream.ended:
            raise SessionClosedError("this recording was stopped; await "
                                     "rec.wait_until_idle(), then feed again to start a new "
                                     "one")
        self._forward(data)

    async def wait_for_room(self) -> None:
        """Wait while the service is not taking audio (see
        :meth:`UpstreamSession.wait_for_room`); at once if the recording is over."""
        if not self.upstream.ended:
            await self.upstream.wait_for_room()

    def _forward(self, data: bytes) -> None:
        self.next_seq += 1
        self.bytes_in += len(data)
        if self.audio is not None:
            self.audio.extend(data)
        if self._tap is not None:
            self._tap.feed(data)
        if not self.upstream.ended and not self.upstream.state.is_over:
            self.upstream.send_audio(data)

    def stop_from_view(self, chunks: int | None) -> None:
        """The view's own stop: every chunk it sent is here (or never will be)."""
        self.seen()
        if chunks is not None and chunks != self.next_seq + len(self.held):
            logger.warning("the browser sent %s chunks but %d arrived", chunks,
                           self.next_seq + len(self.held))
        self.end("stop")

    def end(self, why: str) -> None:
        """End the stream now, forwarding held chunks across any gap, in order."""
        for seq in sorted(self.held):
            logger.warning("chunk gap before chunk %d; forwarding it anyway", seq)
            self.next_seq = seq
            self._forward(self.held.pop(seq))
        if self.ended_by is None:
            self.ended_by = why
        self.resumed.set()
        self._deadline.cancel()
        self.upstream.end()

    def request_stop(self) -> None:
        """Python asked to stop a view's recording: the view gets a few seconds to send
        its last chunk and its stop; after that the upstream is ended from here."""
        if self._stop_due is None:
            self._stop_due = self._loop.time() + self.stop_grace
            self._deadline.arm()

    def pause(self) -> None:
        self.seen()
        self.resumed.clear()
        self.upstream.pause()

    def resume(self) -> None:
        self.seen()
        self.resumed.set()
        self.upstream.resume()

    @property
    def paused(self) -> bool:
        return not self.resumed.is_set()

    def cancel(self) -> None:
        """Stop everything now (the widget closes): the task closes the upstream."""
        self._deadline.cancel()
        if not self.task.done():
            self.task.cancel()

    def abort(self, error: SonioxError) -> None:
        """End now with ``error`` (the view gave up: the microphone failed, the page
        is going away)."""
        self.error = self.error or error
        self.cancel()

    def finalize(self, trailing_silence_ms: int | None = None) -> None:
        """Ask the service to make everything heard so far final (it answers ``<fin>``)."""
        self.upstream.finalize(trailing_silence_ms)

    def stats(self) -> dict[str, int]:
        """Chunks and bytes received, bytes the upstream sent on (resent audio counts
        again after a reconnect), and the connections it opened."""
        return {"chunks": self.next_seq, "bytes": self.bytes_in,
                "bytes_sent_upstream": self.upstream.bytes_sent,
                "connections": self.upstream.connections}

    # -- the session task ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            async with self.upstream:
                async for reply in self.upstream.replies():
                    try:
                        self._on_reply(reply)
                    except Exception:
                        # A user's observer raised while a trait was set: that is their
                        # bug, not the recording's; log it once and go on.
                        if not self._reply_failure_logged:
                            self._reply_failure_logged = True
                            logger.exception("a callback observing the transcript failed "
                                             "(reported once; the recording goes on)")
        except SonioxError as exc:
            self.error = exc
        except asyncio.CancelledError:
            self.error = self.error or SessionClosedError("the recording was closed")
            self._finish()
            raise
        except Exception as exc:  # keep the kernel side alive whatever happens
            logger.exception("recording crashed")
            self.error = ProtocolViolationError(f"internal error: {exc}")
        self._finish()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not self.done.is_set():  # cancelled before it ever ran
            self.error = self.error or SessionClosedError("the recording was closed")
            self._finish()

    def _finish(self) -> None:
        self._deadline.cancel()
        if not self.done.is_set():
            self.done.set()
            self.resumed.set()
            if self._tap is not None:
                # The decoder's last samples still reach the listeners (off the loop).
                self._loop.run_in_executor(None, self._tap.close)
            self._on_done(self)

    # -- the watchdog -------------------------------------------------------------------

    def _due(self) -> float | None:
        if self.ended:
            return None
        times = [self._last_seen + self.view_grace] if self.from_view else []
        if self._stop_due is not None:
            times.append(self._stop_due)
        return min(times) if times else None

    def _fire(self, now: float, due: float) -> None:
        if self.ended:
            return
        if now - due > _LATE:
            # The loop was blocked (a busy cell): the view's messages are still queued,
            # so their absence proves nothing. Look again once they had a chance.
            self._last_seen = max(self._last_seen, now)
            if self._stop_due is not None:
                self._stop_due = max(self._stop_due, now + self.stop_grace)
        elif self._stop_due is not None and now >= self._stop_due:
            logger.warning("the view did not confirm the stop within %g s; ending the "
                           "session from the kernel", self.stop_grace)
            self.end("stop_timeout")
            return
        elif self.from_view and now >= self._last_seen + self.view_grace:
            logger.warning("the recording view has sent nothing for %g s (closed or gone); "
                           "ending its session and keeping its words", self.view_grace)
            self.end("view_gone")
            return
        self._deadline.arm()
