"""Jupyter server extension: TCP_NODELAY on the kernel WebSockets, so a transcript is not late.

Why: the Jupyter server sends kernel messages (widget updates among them) to the browser
over a Tornado WebSocket, and jupyter_server never calls ``set_nodelay(True)`` on it. With
Nagle's algorithm on, a small message written while the previous one is not acknowledged
yet waits for the browser's delayed ACK, ~40 ms on Linux. A live transcript is exactly a
stream of small messages, so each update reached the page ~45 ms late (issue 11). Tornado's
own documentation of ``WebSocketHandler.set_nodelay`` recommends turning it on for this.

What it changes: only the route of the kernel channels WebSocket
(``/api/kernels/<id>/channels``). Its handler class is replaced, in the server's router, by
a subclass whose ``open()`` first turns on TCP_NODELAY for that connection. Nothing else is
touched: other routes, the kernel connection class (Enterprise Gateway's included) and
the messages themselves stay as they are. It costs a TCP segment per message instead of
fewer, larger ones, which is what every interactive WebSocket wants.

It is enabled on install by ``etc/jupyter/jupyter_server_config.d/soniox_widget.json``
and loaded by every app built on jupyter_server (JupyterLab, Notebook 7, ``jupyter
server``). To turn it off::

    jupyter server extension disable soniox_widget.jupyter_nodelay

(it writes ``soniox_widget.jupyter_nodelay.json`` next to the installed file; that one is
read after it and wins, and stays across upgrades). For one user only, put
``{"ServerApp": {"jpserver_extensions": {"soniox_widget.jupyter_nodelay": false}}}`` in
``~/.jupyter/jupyter_server_config.json``; for one run, pass
``--ServerApp.jpserver_extensions=soniox_widget.jupyter_nodelay=False``. If it cannot
find the kernel WebSocket route (a jupyter_server it does not know), it logs a warning
and leaves the server as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from .jupyter_routes import KERNEL_CHANNELS_ROUTE, install, with_mixin, wrap_kernel_channels

logger = logging.getLogger(__name__)

__all__ = ["KERNEL_CHANNELS_ROUTE", "NoDelayMixin", "enable_nodelay", "with_nodelay"]

#: Name of this extension in ``ServerApp.jpserver_extensions``.
EXTENSION_NAME = __name__


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Where jupyter_server finds this extension (this module)."""
    return [{"module": __name__}]


class NoDelayMixin:
    """Turns on TCP_NODELAY when the WebSocket opens, before any message is written."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        try:
            self.set_nodelay(True)  # type: ignore[attr-defined]
        except Exception as exc:  # a closed socket, a platform without the option
            logger.debug("TCP_NODELAY not set on a kernel WebSocket: %s", exc)
        return super().open(*args, **kwargs)  # type: ignore[misc]


def with_nodelay(handler_class: type) -> type:
    """``handler_class`` with :class:`NoDelayMixin` in front (itself if it has it already)."""
    return with_mixin(handler_class, NoDelayMixin)


def enable_nodelay(web_app: Any) -> int:
    """Point every kernel channels route of ``web_app`` at a no-delay handler.

    Returns how many routes it changed (0: none found, the server is left as it was).
    """
    return wrap_kernel_channels(web_app, NoDelayMixin)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by jupyter_server once its web application exists; never raises."""
    install(serverapp, NoDelayMixin, EXTENSION_NAME,
            done="TCP_NODELAY on for kernel WebSockets (small messages are sent at once "
                 "instead of waiting for the browser's delayed ACK)",
            otherwise="widget updates may reach the page ~40 ms late")
