"""A plain HTTP/1.1 GET over a raw socket, as a balancer's health check sends it.

No HTTP client library: the tests see exactly the status line and body the server
wrote, with any ``Host`` header they choose (or a token-less request).
"""

from __future__ import annotations

import asyncio
import contextlib


async def http_get(port: int, path: str, host: str = "127.0.0.1",
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
    """``GET path`` on 127.0.0.1:port; returns the status code and the body as text."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # the server closes after answering
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("utf-8", "replace")


def metric(text: str, name: str) -> float:
    """The value of one sample in Prometheus text (``name`` with its labels, exact)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name!r} in the metrics")
