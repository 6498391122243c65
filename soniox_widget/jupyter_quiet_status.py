"""Jupyter server extension: the page is not told the kernel went busy for an audio chunk.

Why: a recording widget sends the kernel an audio chunk every 120 ms (and a heartbeat
every 2 s) as comm messages. The kernel answers every request with a ``busy`` and an
``idle`` status on IOPub, as the Jupyter protocol says, and JupyterLab and Notebook 7
react to each flip: the kernel indicator and the execution indicator are redrawn, and the
page swaps its favicon between busy and idle, which makes the browser request the icon
from the Jupyter server again, twice per chunk. That work on the page and on the
server's event loop lands between the kernel and the page, exactly where the transcript
goes: in ``benchmarks/bench_widget_latency.py --untracked`` it was most of the widget's
slowest updates (issue 11; p99 39 ms with the flips, 16 ms without, in one run).

What it changes: on the kernel channels WebSocket (``/api/kernels/<id>/channels``), a
``busy`` status whose parent is a SonioxRecorder view's ``chunk`` or ``heartbeat``
message is not passed to the browser. Nothing else is dropped: the ``idle`` status that
follows still goes out (front ends use it to know the request is done), and so does
everything about other messages, other widgets, and cells. The server's own record of
kernel activity (culling) reads IOPub on its own connection and still sees both. The
kernel really is busy while it takes a chunk (a fraction of a millisecond, plus
whatever ``rec.on_audio`` callbacks do with it); the page just doesn't blink.

A message is recognised as it goes from the browser to the kernel (a ``comm_msg`` whose
data is ``{"method": "custom", "content": {"type": "chunk" | "heartbeat", "session":
...}}``); its id is remembered in a bounded table shared by all connections, so a second
tab on the same kernel is quiet too. Both the ``v1.kernel.websocket.jupyter.org``
protocol (JupyterLab 4, Notebook 7) and the older JSON one are read.

It is enabled on install by ``etc/jupyter/jupyter_server_config.d/soniox_widget.json``,
next to :mod:`soniox_widget.jupyter_nodelay`. To turn it off::

    jupyter server extension disable soniox_widget.jupyter_quiet_status

or, for one user, ``{"ServerApp": {"jpserver_extensions":
{"soniox_widget.jupyter_quiet_status": false}}}`` in
``~/.jupyter/jupyter_server_config.json``. If it cannot find the kernel WebSocket route,
it logs a warning and leaves the server as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import OrderedDict
from typing import Any

from .jupyter_routes import install, wrap_kernel_channels

logger = logging.getLogger(__name__)

#: Name of this extension in ``ServerApp.jpserver_extensions``.
EXTENSION_NAME = __name__
#: The kernel WebSocket protocol of JupyterLab 4 and Notebook 7 (binary frames).
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
#: View messages whose busy status the page is not shown (see the module docstring).
QUIET_TYPES = frozenset({"chunk", "heartbeat"})
#: Ids remembered: the busy status follows its request within milliseconds, so a few
#: hundred (a minute of chunks at 120 ms) is plenty, and the table never grows further.
REMEMBERED = 512
#: Larger kernel → browser messages are never a status message (those are ~600 bytes).
STATUS_BYTES_MAX = 8192


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Where jupyter_server finds this extension (this module)."""
    return [{"module": __name__}]


class QuietRequests:
    """The ids of the view messages whose busy status is not passed on (bounded, FIFO)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def add(self, msg_id: str) -> None:
        self._ids[msg_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


#: Shared by every connection of the server (message ids are unique across kernels).
QUIET = QuietRequests()


def _v1_parts(message: bytes) -> tuple[str, list[bytes]] | None:
    """``(channel, [header, parent_header, metadata, content, *buffers])`` of a v1 frame,
    read by jupyter_server's own function; None when it does not parse."""
    from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

    if not 6 <= int.from_bytes(message[:8], "little") <= 1024:  # 4 parts + buffers
        return None
    try:
        return deserialize_msg_from_ws_v1(message)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _legacy_message(message: str | bytes) -> dict[str, Any] | None:
    """The message of the older protocol: JSON text, or the binary form with buffers
    (offset count, offsets, then the JSON first)."""
    try:
        if isinstance(message, bytes):
            count = struct.unpack_from("!I", message)[0]
            start, end = struct.unpack_from("!2I", message, 4) if count > 1 else (
                struct.unpack_from("!I", message, 4)[0], len(message))
            message = message[start:end].decode()
        msg = json.loads(message)
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    return msg if isinstance(msg, dict) else None


def _quiet_request_id(header: Any, content: Any) -> str | None:
    """The id of a view's chunk or heartbeat comm message, else None."""
    if not isinstance(header, dict) or header.get("msg_type") != "comm_msg":
        return None
    data = content.get("data") if isinstance(content, dict) else None
    body = data.get("content") if isinstance(data, dict) else None
    if (isinstance(body, dict) and data.get("method") == "custom"
            and body.get("type") in QUIET_TYPES and "session" in body):
        msg_id = header.get("msg_id")
        return msg_id if isinstance(msg_id, str) else None
    return None


def incoming_quiet_id(message: str | bytes, v1: bool) -> str | None:
    """The id of a browser → kernel message whose busy status should stay quiet."""
    if v1:
        if not isinstance(message, bytes) or b"comm_msg" not in message[:4096]:
            return None
        parsed = _v1_parts(message)
        if parsed is None or parsed[0] != "shell" or len(parsed[1]) < 4:
            return None
        header, _, _, content = parsed[1][:4]
        if b'"custom"' not in content:
            return None
        try:
            return _quiet_request_id(json.loads(header), json.loads(content))
        except ValueError:
            return None
    if ("comm_msg" if isinstance(message, str) else b"comm_msg") not in message[:4096]:
        return None
    msg = _legacy_message(message)
    return None if msg is None else _quiet_request_id(msg.get("header"), msg.get("content"))


def is_quiet_busy(message: str | bytes, v1: bool, quiet: QuietRequests) -> bool:
    """Whether a kernel → browser message is the busy status of a quiet request.

    A status message is a few hundred bytes: anything larger (outputs, widget state) is
    passed on without being read.
    """
    if len(message) > STATUS_BYTES_MAX:
        return False
    if v1:
        if not isinstance(message, bytes) or b'"busy"' not in message:
            return False
        parsed = _v1_parts(message)
        if parsed is None or parsed[0] != "iopub" or len(parsed[1]) < 4:
            return False
        try:
            header, parent, _, content = (json.loads(part) for part in parsed[1][:4])
        except ValueError:
            return False
    else:
        if ('"busy"' if isinstance(message, str) else b'"busy"') not in message:
            return False
        msg = _legacy_message(message)
        if msg is None or msg.get("channel") != "iopub":
            return False
        header, parent, content = (msg.get("header"), msg.get("parent_header"),
                                   msg.get("content"))
    return (isinstance(header, dict) and header.get("msg_type") == "status"
            and isinstance(content, dict) and content.get("execution_state") == "busy"
            and isinstance(parent, dict) and parent.get("msg_id") in quiet)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class QuietStatusMixin:
    """Remembers the view's chunk/heartbeat messages and drops their busy status."""

    def on_message(self, message: str | bytes) -> Any:
        try:
            msg_id = incoming_quiet_id(message, self._quiet_v1())
            if msg_id is not None:
                QUIET.add(msg_id)
        except Exception as exc:  # never in the way of the message itself
            logger.debug("reading a kernel message failed: %r", exc)
        return super().on_message(message)  # type: ignore[misc]

    def write_message(self, message: Any, binary: bool = False) -> Any:
        if QUIET:
            try:
                if is_quiet_busy(message, self._quiet_v1(), QUIET):
                    return _done()
            except Exception as exc:
                logger.debug("reading a kernel message failed: %r", exc)
        return super().write_message(message, binary=binary)  # type: ignore[misc]

    def _quiet_v1(self) -> bool:
        return getattr(self, "selected_subprotocol", None) == V1_PROTOCOL


def enable_quiet_status(web_app: Any) -> int:
    """Put :class:`QuietStatusMixin` on every kernel channels route of ``web_app``;
    returns how many routes it changed."""
    return wrap_kernel_channels(web_app, QuietStatusMixin)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by jupyter_server once its web application exists; never raises."""
    install(serverapp, QuietStatusMixin, EXTENSION_NAME,
            done="the page is not shown the kernel's busy status for SonioxRecorder audio "
                 "chunks and heartbeats",
            otherwise="the page will flip busy/idle for every audio chunk")
