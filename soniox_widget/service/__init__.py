"""Both servers as services: health and readiness, Prometheus metrics, drain, session logs.

See :mod:`.lifecycle` (readiness, drain, the per-session log line, the HTTP answers) and
:mod:`.metrics` (what each metric means). The servers own a :class:`ServiceState` each;
the command lines (``python -m soniox_widget.local``, ``soniox-proxy``) add the options
``--metrics``, ``--drain-seconds``, ``--log-format`` and ``--max-sessions``.
"""

from .lifecycle import (
    DRAIN_MESSAGE,
    EndReason,
    FinalLatency,
    ServiceState,
    SessionTicket,
    session_log,
)
from .metrics import MetricsUnavailable, ServiceMetrics

__all__ = [
    "DRAIN_MESSAGE",
    "EndReason",
    "FinalLatency",
    "MetricsUnavailable",
    "ServiceMetrics",
    "ServiceState",
    "SessionTicket",
    "session_log",
]
