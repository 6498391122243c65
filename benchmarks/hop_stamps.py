"""A Jupyter server extension for ``bench_widget_latency.py --hops``: never shipped.

It stamps (wall clock, ms) each widget chunk message as the Jupyter server takes it from
the browser's kernel WebSocket, and each view message naming the echo's byte count
(`` b1234``) as the server takes it from the kernel's IOPub channel, and appends them as
JSON lines to the file named by ``SONIOX_BENCH_SERVER_HOPS``. With the page's and the
kernel's stamps on the same clock, the browser → kernel and kernel → browser legs split
at the server.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

_SEQ = re.compile(rb'"type":\s*"chunk"[^}]*?"seq":\s*(\d+)|"seq":\s*(\d+)[^}]*?"type":\s*"chunk"')
_UPTO = re.compile(rb" b(\d+)")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hop_stamps"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyter_server.services.kernels.connection.channels import (
        ZMQChannelsWebsocketConnection as Connection,
    )

    out = open(os.environ["SONIOX_BENCH_SERVER_HOPS"], "a", buffering=1)
    incoming, outgoing = Connection.handle_incoming_message, Connection.handle_outgoing_message

    def handle_incoming_message(self: Any, message: Any) -> None:
        now = time.time() * 1000
        if isinstance(message, bytes) and b'"chunk"' in message:
            m = _SEQ.search(message[:4096])
            if m:
                out.write(json.dumps({"in": int(m.group(1) or m.group(2)), "t": now}) + "\n")
        incoming(self, message)

    def handle_outgoing_message(self: Any, stream: Any, parts: list[Any]) -> None:
        now = time.time() * 1000
        if stream == "iopub" or getattr(stream, "channel", None) == "iopub":
            found = [int(n) for part in parts for n in _UPTO.findall(bytes(part))]
            if found:
                out.write(json.dumps({"out": max(found), "t": now}) + "\n")
        outgoing(self, stream, parts)

    Connection.handle_incoming_message = handle_incoming_message
    Connection.handle_outgoing_message = handle_outgoing_message

    # What else the server did: each HTTP request as it ends (path, duration), and the
    # times its event loop ran late (a 2 ms probe), to line up with slow chunks.
    settings = server_app.web_app.settings
    log_function = settings.get("log_function")

    def log_request(handler: Any) -> None:
        out.write(json.dumps({"http": handler.request.path, "t": time.time() * 1000,
                              "ms": 1000 * handler.request.request_time()}) + "\n")
        if log_function is not None:
            log_function(handler)

    settings["log_function"] = log_request
    watch_loop(lambda at, late: out.write(json.dumps({"lag": late, "t": at + late}) + "\n"))
    server_app.log.info("hop_stamps: stamping widget messages into %s", out.name)


def watch_loop(on_late: Callable[[float, float], None], every: float = 0.002,
               late_ms: float = 3.0) -> None:
    """Call ``on_late(started_at, late)`` (wall clock ms, ms) each time this thread's
    event loop ran a 2 ms timer more than 3 ms late. The latency benchmark's kernel
    probe uses it too (its kernel inherits this folder on PYTHONPATH)."""
    import asyncio

    loop = asyncio.get_event_loop()
    due = loop.time() + every

    def tick() -> None:
        nonlocal due
        late = (loop.time() - due) * 1000
        if late > late_ms:
            on_late(time.time() * 1000 - late, late)
        due = loop.time() + every
        loop.call_at(due, tick)

    loop.call_at(due, tick)
