"""The standalone WebSocket proxy with its browser page (``python -m soniox_widget.proxy``)."""

from .server import DEFAULT_PORT, ProxyServer

__all__ = ["DEFAULT_PORT", "ProxyServer"]
