"""The kernel channels WebSocket route of a Jupyter server, for this package's extensions.

Both server extensions (:mod:`soniox_widget.jupyter_nodelay`,
:mod:`soniox_widget.jupyter_quiet_status`) change one thing about the kernel channels
WebSocket (``/api/kernels/<id>/channels``), the connection that carries every kernel
message between the browser and the server. Each does it the same way: in the server's
router, that route's handler class is replaced by a subclass with the extension's mixin
in front. Nothing else is touched, and the two compose in either order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: The kernel channels route of jupyter_server 1.x and 2.x (after the base URL).
KERNEL_CHANNELS_ROUTE = re.compile(r"/api/kernels/.+/channels\$?$")


def with_mixin(handler_class: type, mixin: type) -> type:
    """``handler_class`` with ``mixin`` in front (itself if it has the mixin already)."""
    if issubclass(handler_class, mixin):
        return handler_class
    name = mixin.__name__.removesuffix("Mixin")
    return type(f"{name}{handler_class.__name__}", (mixin, handler_class),
                {"__module__": mixin.__module__})


def _rules(router: Any) -> Iterator[Any]:
    """Every routing rule of a Tornado application, nested routers included."""
    for rule in getattr(router, "rules", ()):
        yield rule
        if hasattr(rule.target, "rules"):
            yield from _rules(rule.target)


def _is_kernel_channels(rule: Any) -> bool:
    from tornado.websocket import WebSocketHandler

    target, regex = rule.target, getattr(rule.matcher, "regex", None)
    return (isinstance(target, type) and issubclass(target, WebSocketHandler)
            and regex is not None and KERNEL_CHANNELS_ROUTE.search(regex.pattern) is not None)


def wrap_kernel_channels(web_app: Any, mixin: type) -> int:
    """Put ``mixin`` in front of every kernel channels handler of ``web_app``.

    Returns how many routes it changed (0: none found, the server is left as it was).
    """
    changed = 0
    for rule in _rules(web_app.default_router):
        if _is_kernel_channels(rule):
            rule.target = with_mixin(rule.target, mixin)
            changed += 1
    return changed


def install(serverapp: Any, mixin: type, name: str, *, done: str, otherwise: str) -> None:
    """An extension's ``_load_jupyter_server_extension``: wrap the route, log the outcome
    (``done`` when it worked, ``otherwise`` what the user gets when it did not). Never
    raises: a server this cannot change still starts, as it was."""
    log = serverapp.log
    try:
        changed = wrap_kernel_channels(serverapp.web_app, mixin)
    except Exception as exc:
        log.warning("%s: could not change the kernel WebSocket route (%s); %s",
                    name, exc, otherwise)
        return
    if changed:
        log.info("%s: %s", name, done)
    else:
        log.warning("%s: found no kernel WebSocket route to change (an unknown "
                    "jupyter_server?); %s", name, otherwise)
