"""Prometheus metrics of one server (local engine or proxy), with ``prometheus-client``.

Each server gets its own :class:`~prometheus_client.CollectorRegistry` rather than the
process-wide default one: two servers in one process (tests, a notebook running both)
must not add up each other's sessions, and a registry per server never raises
"duplicated timeseries" when a second one starts.

What each metric means (the README's "Running for many users" repeats this):

``soniox_sessions_active``
    sessions open now (a WebSocket past its handshake, not yet ended).
``soniox_sessions_total{reason}``
    sessions ended, by why: ``finished`` (the client ended its stream and got
    ``finished``), ``client_gone`` (the client closed or vanished first), ``error``
    (an error reply, see ``soniox_session_errors_total``), ``drained`` (ended with a
    503 "restart the request" at the end of a drain), ``stopped`` (the server stopped
    at once), ``refused`` (over ``--max-sessions`` or draining).
``soniox_session_errors_total{code}``
    error replies that ended a session, by ``error_code`` (for the proxy these are
    mostly what the upstream answered; "none" for a connection lost for good).
``soniox_audio_seconds_total``
    seconds of audio received from clients.
``soniox_upstream_reconnects_total`` (proxy only)
    times a proxy session lost its upstream and resumed on a new connection.
``soniox_final_latency_seconds``
    from the moment audio reached the server (raw PCM: counted by bytes) or the engine
    reported hearing it (``total_audio_proc_ms``, container formats) to the moment a
    reply made that audio's words final.
``soniox_engine_queue_depth`` (local engine only)
    decodes waiting for or running on the engine's workers: above the worker count for
    long, the engine is behind and its words come late.
``soniox_ready``
    1 while ``/readyz`` says ready (not draining, under ``--max-sessions``).
"""

from __future__ import annotations

from collections.abc import Callable

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
except ImportError:  # pragma: no cover - exercised only without the extra
    CollectorRegistry = None  # type: ignore[assignment,misc]

#: Seconds: a live session's words are final within a few seconds of the audio.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)


class MetricsUnavailable(RuntimeError):
    """``--metrics`` without ``prometheus-client`` installed."""

    def __init__(self) -> None:
        super().__init__("metrics need prometheus-client: pip install 'soniox-widget[service]'")


class ServiceMetrics:
    """The metrics of one server; see the module docstring for what each one means.

    Args:
        kind: ``"local"`` (adds the engine queue depth) or ``"proxy"`` (adds reconnects).
        engine_queue_depth: read at every scrape (local engine only).

    Example::

        metrics = ServiceMetrics("local", engine_queue_depth=lambda: engine.queue_depth)
        metrics.audio_seconds.inc(0.12)
        body = metrics.render()
    """

    def __init__(self, kind: str,
                 engine_queue_depth: Callable[[], float] | None = None) -> None:
        if CollectorRegistry is None:
            raise MetricsUnavailable()
        self.registry = CollectorRegistry()
        registry = self.registry
        self.active = Gauge("soniox_sessions_active", "Sessions open now",
                            registry=registry)
        self.sessions = Counter("soniox_sessions", "Sessions ended, by reason", ["reason"],
                                registry=registry)
        self.errors = Counter("soniox_session_errors",
                              "Error replies that ended a session, by error_code", ["code"],
                              registry=registry)
        self.audio_seconds = Counter("soniox_audio_seconds",
                                     "Seconds of audio received from clients",
                                     registry=registry)
        self.final_latency = Histogram(
            "soniox_final_latency_seconds",
            "From audio received (or heard by the engine) to its words being final",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.ready = Gauge("soniox_ready", "1 while /readyz answers ready", registry=registry)
        self.reconnects: Counter | None = None
        if kind == "proxy":
            self.reconnects = Counter("soniox_upstream_reconnects",
                                      "Upstream connections resumed by proxy sessions",
                                      registry=registry)
        if engine_queue_depth is not None:
            queue = Gauge("soniox_engine_queue_depth",
                          "Engine decodes waiting or running", registry=registry)
            queue.set_function(engine_queue_depth)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)
