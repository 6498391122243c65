"""The Jupyter server extension's routing change, in a small Tornado app (no Jupyter).

The real servers (bare, Lab, Notebook 7) are checked in
tests/integration/test_jupyter_nodelay.py; here: which routes change, that the server
is left alone when there is nothing to change, and that a wrapped handler's socket has
TCP_NODELAY on when the WebSocket opens.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from soniox_widget.jupyter_nodelay import (
    NoDelayMixin,
    _load_jupyter_server_extension,
    enable_nodelay,
)

KERNEL_ID = r"(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)"


class Channels(WebSocketHandler):
    nodelay_at_open: asyncio.Queue[int] | None = None

    def open(self, kernel_id: str) -> None:
        sock = self.ws_connection.stream.socket  # the server's end of this connection
        self.nodelay_at_open.put_nowait(sock.getsockopt(socket.IPPROTO_TCP,
                                                        socket.TCP_NODELAY))


class Terminal(WebSocketHandler):
    pass


class Page(RequestHandler):
    def get(self) -> None:
        self.write("ok")


def app(base: str = "/") -> Application:
    return Application([
        (f"{base}api/kernels/{KERNEL_ID}/channels", Channels),
        (f"{base}terminals/websocket/(\\w+)", Terminal),
        (f"{base}api/kernels/{KERNEL_ID}", Page),
    ])


def targets(application: Application) -> dict[str, type]:
    return {rule.matcher.regex.pattern: rule.target
            for rule in application.wildcard_router.rules}


@pytest.mark.parametrize("base", ["/", "/user/someone/"])
def test_only_the_kernel_channels_route_changes(base):
    application = app(base)
    before = targets(application)
    assert enable_nodelay(application) == 1
    after = targets(application)
    changed = [p for p in before if after[p] is not before[p]]
    assert len(changed) == 1 and changed[0].endswith("/channels$")
    new = after[changed[0]]
    assert issubclass(new, Channels) and issubclass(new, NoDelayMixin)


def test_enabling_twice_wraps_once():
    application = app()
    enable_nodelay(application)
    first = targets(application)
    enable_nodelay(application)
    assert targets(application) == first


def test_a_server_without_the_route_is_left_alone_with_a_warning(caplog):
    application = Application([("/other", Page)])
    before = targets(application)

    class ServerApp:
        web_app = application
        log = logging.getLogger("test.serverapp")

    with caplog.at_level(logging.INFO, logger="test.serverapp"):
        _load_jupyter_server_extension(ServerApp())
    assert targets(application) == before
    assert any(r.levelno == logging.WARNING and "no kernel WebSocket route" in r.getMessage()
               for r in caplog.records)


def test_a_failure_is_logged_never_raised(caplog):
    class Broken:
        @property
        def default_router(self):
            raise RuntimeError("routers moved")

    class ServerApp:
        web_app = Broken()
        log = logging.getLogger("test.serverapp")

    with caplog.at_level(logging.INFO, logger="test.serverapp"):
        _load_jupyter_server_extension(ServerApp())
    assert any("routers moved" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("wrapped", [True, False])
async def test_the_socket_has_nodelay_when_the_websocket_opens(wrapped):
    from websockets.asyncio.client import connect

    application = app()
    if wrapped:
        enable_nodelay(application)
    Channels.nodelay_at_open = asyncio.Queue()
    server = application.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/api/kernels/a-b-c-d-e/channels"):
            nodelay = await Channels.nodelay_at_open.get()
    finally:
        server.stop()
        await server.close_all_connections()
    assert bool(nodelay) is wrapped
