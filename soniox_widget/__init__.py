"""soniox-widget: speak into a notebook, watch a live Soniox transcript, observe it from Python.

Public API::

    SonioxRecorder      the notebook widget (anywidget)
    SonioxConfig        session options, validated before connecting
    Transcript          the fold of replies: final_text, nonfinal_text, tokens, events
    transcribe_file     a file through the same path, blocking (async: transcribe_file_async)
    UpstreamSession     the proxy coroutine itself, for your own front ends
    SonioxError         every session failure (error_code, error_message, reason,
                        retryable, partial); one subclass per kind (ConnectError, ...)
"""

from .config import SonioxConfig
from .errors import (
    ConfigError,
    ConnectError,
    ConnectionLostError,
    HandshakeError,
    MissingAPIKeyError,
    ProtocolViolationError,
    ServiceError,
    SessionClosedError,
    SessionTimeoutError,
    SonioxError,
    SonioxWidgetError,
)
from .headless import transcribe_file, transcribe_file_async
from .protocol import Reply, Token
from .redaction import install_log_redaction
from .transcript import Segment, Transcript, TranscriptDelta, TranscriptEvent
from .upstream import UpstreamSession

install_log_redaction()  # websockets logs handshake headers at DEBUG: mask credentials

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "HandshakeError",
    "MissingAPIKeyError",
    "ProtocolViolationError",
    "Reply",
    "Segment",
    "ServiceError",
    "SessionClosedError",
    "SessionTimeoutError",
    "SonioxConfig",
    "SonioxError",
    "SonioxWidgetError",
    "Token",
    "Transcript",
    "TranscriptDelta",
    "TranscriptEvent",
    "UpstreamSession",
    "transcribe_file",
    "transcribe_file_async",
]


def __getattr__(name: str):
    # The widget imports anywidget/ipywidgets; load it only when asked for.
    if name == "SonioxRecorder":
        from .recorder import SonioxRecorder

        return SonioxRecorder
    raise AttributeError(f"module 'soniox_widget' has no attribute {name!r}")
