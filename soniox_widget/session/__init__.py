"""One recording's session with the service: the pure lifecycle (``core``), what may be
resent after a drop (``ledger``), and the decoding that resumes compressed audio
(``transcode``). The asyncio driver is :class:`soniox_widget.upstream.UpstreamSession`."""

from .core import NO_RECONNECT, ReconnectPolicy, SessionCore, SessionState

__all__ = ["NO_RECONNECT", "ReconnectPolicy", "SessionCore", "SessionState"]
