"""What makes either server a service: readiness, drain, per-session accounting.

A load balancer (HAProxy, nginx, Kubernetes) needs three answers from a replica, none
of which may need a token or touch a session: is the process alive (``/healthz``),
should it get new sessions (``/readyz``), and what is it doing (``/metrics``). An
operator needs one log line per session start and end, with its id, duration, bytes
and why it ended, and never the key. And a rolling restart needs the replica to stop
taking sessions, let the open ones finish, and end the rest with the error Soniox
documents as "restart the request" (503), which the package's own clients answer by
resuming on another replica with no word lost (``session/core.py``).

:class:`ServiceState` holds that state and is driven by the server it belongs to:
``open_session()`` and ``close_session()`` around each session, ``begin_drain()`` on
SIGTERM, ``respond()`` for every HTTP request before anything else looks at it. It
does no I/O of its own besides logging.
"""

from __future__ import annotations

import enum
import http
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .metrics import ServiceMetrics

#: Session start/end lines go here, so an operator can route them on their own.
session_log = logging.getLogger("soniox_widget.sessions")

HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")

#: The message of the 503 that ends a session at the end of a drain: Soniox's own words,
#: which clients (the package's, and Soniox's SDKs) read as "open a new session".
DRAIN_MESSAGE = ("Cannot continue request (the server is shutting down). "
                 "Please restart the request.")


class EndReason(str, enum.Enum):
    """Why a session ended (the ``reason`` of its log line and metric)."""

    FINISHED = "finished"
    CLIENT_GONE = "client_gone"
    ERROR = "error"
    DRAINED = "drained"
    STOPPED = "stopped"
    REFUSED = "refused"


class FinalLatency:
    """From audio arriving to its words being final, for one session.

    ``audio_until(ms, now)`` marks that the server had the audio up to ``ms`` at
    ``now``; ``final_until(ms, now)`` returns how long ago the audio at ``ms`` had
    arrived (None when it did not advance or nothing is known). Marks are kept in
    order and dropped once final, and at most ``max_marks`` are kept (a client that
    sends tiny frames for hours costs bounded memory: the oldest marks go first).
    """

    def __init__(self, max_marks: int = 4096) -> None:
        self._marks: deque[tuple[int, float]] = deque(maxlen=max_marks)
        self._final_ms = 0
        self._heard_ms = 0

    def audio_until(self, ms: int, now: float) -> None:
        if ms > self._heard_ms:
            self._heard_ms = ms
            self._marks.append((ms, now))

    def final_until(self, ms: int, now: float) -> float | None:
        if ms <= self._final_ms:
            return None
        self._final_ms = ms
        marks = self._marks
        while marks and marks[0][0] < ms:
            if len(marks) == 1:  # the newest mark: keep it, it is all we know
                break
            marks.popleft()
        if not marks:
            return None
        return max(0.0, now - marks[0][1])


@dataclass
class SessionTicket:
    """One session as the service sees it; its end makes one log line."""

    id: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    audio_bytes: int = 0
    audio_ms: int = 0
    reconnects: int = 0
    user: str | None = None  # whose key opened it (a server with one key per user)
    latency: FinalLatency = field(default_factory=FinalLatency, repr=False)
    closed: bool = False


class ServiceState:
    """Readiness, drain and accounting of one server; see the module docstring.

    Args:
        name: ``"local"`` or ``"proxy"`` (in log lines).
        max_sessions: not ready at this many open sessions (None: no limit).
        metrics: the server's metrics; None serves no ``/metrics`` (404).
        log_format: ``"text"`` or ``"json"`` (one JSON object per line).

    Example::

        state = ServiceState("local", max_sessions=8)
        ticket = state.open_session("127.0.0.1:50000")
        ...
        state.close_session(ticket, EndReason.FINISHED)
    """

    def __init__(self, name: str, *, max_sessions: int | None = None,
                 metrics: ServiceMetrics | None = None, log_format: str = "text") -> None:
        if log_format not in ("text", "json"):
            raise ValueError("log_format must be 'text' or 'json'")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError("max_sessions must be 1 or more")
        self.name = name
        self.max_sessions = max_sessions
        self.metrics = metrics
        self.log_format = log_format
        self.active = 0
        self.draining = False
        self.started_sessions = 0
        self._update_ready()

    # -- readiness ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a balancer should send new sessions here."""
        return not self.draining and (self.max_sessions is None
                                      or self.active < self.max_sessions)

    @property
    def accepting(self) -> bool:
        """Whether a new WebSocket session is taken now (not while draining)."""
        return not self.draining

    def begin_drain(self) -> None:
        """Not ready from now on, and new sessions are refused; open ones go on."""
        if not self.draining:
            self.draining = True
            session_log.info(self._line("drain", active=self.active))
            self._update_ready()

    def _update_ready(self) -> None:
        if self.metrics is not None:
            self.metrics.ready.set(1 if self.ready else 0)

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, peer: object = None) -> SessionTicket:
        """A session starts: counted, and logged with a new id."""
        ticket = SessionTicket(id=uuid.uuid4().hex[:12], peer=_peer(peer))
        self.active += 1
        self.started_sessions += 1
        if self.metrics is not None:
            self.metrics.active.inc()
        self._update_ready()
        session_log.info(self._line("session_start", id=ticket.id, peer=ticket.peer))
        return ticket

    def refused(self, why: str, peer: object = None) -> None:
        """A client was turned away before its session started (limit, draining)."""
        if self.metrics is not None:
            self.metrics.sessions.labels(EndReason.REFUSED.value).inc()
        session_log.info(self._line("session_refused", peer=_peer(peer), why=why))

    def audio(self, ticket: SessionTicket, n_bytes: int, audio_ms: int | None,
              now: float) -> None:
        """``n_bytes`` of audio arrived; ``audio_ms`` is the session's audio so far when
        the format says it (raw PCM), else None (the engine's replies tell it)."""
        ticket.audio_bytes += n_bytes
        if audio_ms is not None:
            self.heard(ticket, audio_ms, now)

    def heard(self, ticket: SessionTicket, audio_ms: int, now: float) -> None:
        """The session's audio reached ``audio_ms`` (counted or reported)."""
        if audio_ms > ticket.audio_ms:
            if self.metrics is not None:
                self.metrics.audio_seconds.inc((audio_ms - ticket.audio_ms) / 1000)
            ticket.audio_ms = audio_ms
        ticket.latency.audio_until(audio_ms, now)

    def final(self, ticket: SessionTicket, final_ms: int, now: float) -> None:
        """A reply made the audio up to ``final_ms`` final."""
        latency = ticket.latency.final_until(final_ms, now)
        if latency is not None and self.metrics is not None:
            self.metrics.final_latency.observe(latency)

    def reconnected(self, ticket: SessionTicket) -> None:
        ticket.reconnects += 1
        if self.metrics is not None and self.metrics.reconnects is not None:
            self.metrics.reconnects.inc()

    def close_session(self, ticket: SessionTicket, reason: EndReason,
                      error_code: int | None = None) -> None:
        """The session ended: uncounted, and logged once (later calls do nothing)."""
        if ticket.closed:
            return
        ticket.closed = True
        self.active -= 1
        if self.metrics is not None:
            self.metrics.active.dec()
            self.metrics.sessions.labels(reason.value).inc()
            if reason is EndReason.ERROR:
                self.metrics.errors.labels(str(error_code or "none")).inc()
        self._update_ready()
        fields: dict[str, object] = {
            "id": ticket.id, "peer": ticket.peer,
            "duration_s": round(time.monotonic() - ticket.started, 3),
            "audio_bytes": ticket.audio_bytes,
            "audio_s": round(ticket.audio_ms / 1000, 3),
            "reason": reason.value,
        }
        if ticket.user is not None:
            fields["user"] = ticket.user
        if error_code is not None:
            fields["error_code"] = error_code
        if self.metrics is not None and self.metrics.reconnects is not None:
            fields["reconnects"] = ticket.reconnects
        session_log.info(self._line("session_end", **fields))

    def _line(self, event: str, **fields: object) -> str:
        # Only ids, counts, reasons and the peer's address: nothing a client sent as
        # text (a key could hide there) is ever put in a line.
        if self.log_format == "json":
            return json.dumps({"event": event, "server": self.name, **fields},
                              separators=(",", ":"))
        return " ".join([f"{self.name} {event}"] + [f"{k}={v}" for k, v in fields.items()])

    # -- HTTP ------------------------------------------------------------------------------

    def respond(self, request: Request) -> Response | None:
        """Answer ``GET /healthz``, ``/readyz`` and ``/metrics``; None for anything else.

        Called before the server's Host, Origin and token checks: a balancer's health
        check or a Prometheus scrape names the replica however it likes and carries no
        token, and the answers hold no secret and start no session.
        """
        path = request.path.split("?", 1)[0]
        if path not in HEALTH_PATHS or "upgrade" in request.headers.get("Connection",
                                                                        "").lower():
            return None
        if path == "/healthz":
            return _plain(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.ready:
                return _plain(http.HTTPStatus.OK, f"ready ({self.active} sessions)\n")
            why = "draining" if self.draining else f"at --max-sessions {self.max_sessions}"
            return _plain(http.HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {why}\n")
        if self.metrics is None:
            return _plain(http.HTTPStatus.NOT_FOUND,
                          "metrics are off; start the server with --metrics\n")
        body = self.metrics.render()
        return Response(200, "OK", Headers([("Content-Type", self.metrics.content_type),
                                            ("Content-Length", str(len(body))),
                                            ("Cache-Control", "no-store")]), body)


def _plain(status: http.HTTPStatus, text: str) -> Response:
    body = text.encode()
    return Response(status.value, status.phrase,
                    Headers([("Content-Type", "text/plain; charset=utf-8"),
                             ("Content-Length", str(len(body))),
                             ("Cache-Control", "no-store")]), body)


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "-" if peer is None else str(peer)
