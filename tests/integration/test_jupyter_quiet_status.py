"""A real Jupyter server does not show the page the kernel's busy status for audio chunks.

Each test starts a Jupyter server as installed (the package's config enables the
extension), starts a kernel, and speaks the kernel WebSocket protocol like JupyterLab 4
(``v1.kernel.websocket.jupyter.org``, binary frames built with jupyter_server's own
functions) or like older front ends (JSON text). It sends comm messages shaped like a
SonioxRecorder view's ``chunk`` and ``heartbeat`` (a binary buffer with the chunk), and
another widget's custom message, and reads everything the server passes back until each
request's ``idle`` status: the chunk's ``busy`` never arrives, its ``idle`` does, and the
other message keeps both. With the extension disabled the documented way, the chunk's
busy status is back: that is what the page would flip its favicon for.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from soniox_widget.jupyter_quiet_status import EXTENSION_NAME, V1_PROTOCOL
from tests.jupyter_server import Server, jupyter

pytest.importorskip("jupyter_server")


class KernelChannels:
    """A kernel channels WebSocket, speaking the v1 protocol or the JSON one."""

    def __init__(self, ws: Any, session: str, v1: bool) -> None:
        self.ws, self.session, self.v1 = ws, session, v1
        assert ws.subprotocol == (V1_PROTOCOL if v1 else None)

    @classmethod
    @contextlib.contextmanager
    def open(cls, server: Server, kernel_id: str, v1: bool) -> Iterator[KernelChannels]:
        from websockets.sync.client import connect

        session = uuid.uuid4().hex
        url = (f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
               f"?session_id={session}&token={server.token}")
        with connect(url, open_timeout=30, max_size=None,
                     subprotocols=[V1_PROTOCOL] if v1 else None) as ws:
            yield cls(ws, session, v1)

    def send(self, msg_type: str, content: dict[str, Any],
             buffers: tuple[bytes, ...] = ()) -> str:
        from jupyter_server.services.kernels.connection.base import (
            serialize_binary_message,
            serialize_msg_to_ws_v1,
        )

        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                  "username": "test", "date": datetime.now(timezone.utc).isoformat(),
                  "version": "5.3"}
        if self.v1:
            parts = [json.dumps(part).encode() for part in (header, {}, {}, content)]
            self.ws.send(serialize_msg_to_ws_v1([*parts, *buffers], "shell"))
        else:
            msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content,
                   "channel": "shell", "buffers": list(buffers)}
            self.ws.send(serialize_binary_message(msg) if buffers else json.dumps(msg))
        return msg_id

    def statuses_until_idle(self, msg_id: str, timeout: float = 60.0) -> list[str]:
        """The execution states the page is shown for request ``msg_id``, up to its idle."""
        from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

        states: list[str] = []
        deadline = time.monotonic() + timeout
        for _ in range(10_000):  # bounded: a few messages per request
            left = deadline - time.monotonic()
            if left <= 0:
                break
            frame = self.ws.recv(timeout=left)
            if self.v1:
                channel, parts = deserialize_msg_from_ws_v1(frame)
                header, parent, _, content = (json.loads(p) for p in parts[:4])
            else:
                msg = json.loads(frame)
                channel, header, parent, content = (msg["channel"], msg["header"],
                                                    msg["parent_header"], msg["content"])
            if channel == "iopub" and header["msg_type"] == "status" \
                    and parent.get("msg_id") == msg_id:
                states.append(content["execution_state"])
                if states[-1] == "idle":
                    return states
        pytest.fail(f"no idle status for {msg_id} within {timeout} s (saw {states})")


def view_message(kind: str, **fields: Any) -> dict[str, Any]:
    """A comm message's content as anywidget sends a view's custom message."""
    return {"comm_id": uuid.uuid4().hex,
            "data": {"method": "custom", "content": {"type": kind, **fields}}}


def statuses(server: Server, v1: bool) -> dict[str, list[str]]:
    kernel = server.api("POST", "/api/kernels")
    try:
        with KernelChannels.open(server, kernel["id"], v1) as channels:
            return _statuses(channels)
    finally:
        server.api("DELETE", f"/api/kernels/{kernel['id']}")


def _statuses(channels: KernelChannels) -> dict[str, list[str]]:
    seen = {}
    # One request at a time: each one's statuses are read before the next is sent.
    for name, msg_type, content, buffers in [
        ("kernel_info", "kernel_info_request", {}, ()),
        ("chunk", "comm_msg", view_message("chunk", session="s1", seq=0),
         (b"\x1aE\xdf\xa3" + bytes(2000),)),
        ("heartbeat", "comm_msg", view_message("heartbeat", session="s1"), ()),
        ("other widget", "comm_msg", view_message("click", x=1), ()),
        ("chunk again", "comm_msg", view_message("chunk", session="s1", seq=1),
         (bytes(1200),)),
    ]:
        msg_id = channels.send(msg_type, content, buffers)
        seen[name] = channels.statuses_until_idle(msg_id)
    return seen


@pytest.mark.parametrize("v1", [True, False], ids=["v1-protocol", "json-protocol"])
def test_chunks_and_heartbeats_reach_the_page_without_busy(tmp_path, v1):
    with jupyter(tmp_path, "jupyter_server") as server:
        seen = statuses(server, v1)
    assert f"{EXTENSION_NAME}: the page is not shown" in server.log.read_text()
    assert seen["chunk"] == ["idle"]
    assert seen["heartbeat"] == ["idle"]
    assert seen["chunk again"] == ["idle"]
    # Everything else keeps its busy status.
    assert seen["kernel_info"] == ["busy", "idle"]
    assert seen["other widget"] == ["busy", "idle"]


def test_in_jupyterlab_too(tmp_path):
    pytest.importorskip("jupyterlab")
    with jupyter(tmp_path, "jupyterlab") as server:
        seen = statuses(server, v1=True)
    assert seen["chunk"] == ["idle"] and seen["other widget"] == ["busy", "idle"]


def test_disabled_extension_shows_busy_for_every_chunk(tmp_path):
    with jupyter(tmp_path, "jupyter_server", disable=(EXTENSION_NAME,)) as server:
        seen = statuses(server, v1=True)
    assert seen["chunk"] == ["busy", "idle"]
    assert seen["heartbeat"] == ["busy", "idle"]
    assert "the page is not shown" not in server.log.read_text()
