"""A bare relay on websockets' sans-I/O protocol objects: the ceiling, not a product.

    SONIOX_WS_URL=ws://127.0.0.1:PORT/... PORT=3001 python benchmarks/bare_relay.py

``bench_proxy.py --bare`` runs it as one more path, to show what the proxy's CPU could
come down to on the same library without its asyncio layer: the frames are parsed and
written by ``websockets.server.ServerProtocol`` / ``websockets.client.ClientProtocol``
from ``asyncio.Protocol`` callbacks, with no task, future or async context manager per
message. It has none of the proxy's features (no Host/Origin policy, token, limits,
keepalives, reconnects, flow control or key handling) and is never shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

UPSTREAM = os.environ.get("SONIOX_WS_URL", "ws://127.0.0.1:9/transcribe-websocket")
START = json.dumps({"audio_format": "auto", "model": "stt-rt-v5"}).encode()


def flush(protocol: Protocol, transport: asyncio.Transport) -> None:
    for data in protocol.data_to_send():
        if data:
            transport.write(data)
        else:  # the protocol is done with the connection
            transport.close()


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.protocol = ClientProtocol(parse_uri(UPSTREAM))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        flush(self.protocol, self.transport)

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.protocol.send_text(START)
                for frame in self.client.waiting:
                    self.forward(frame)
                self.client.upstream = self
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.client.protocol.send_text(event.data)
                flush(self.client.protocol, self.client.transport)
        flush(self.protocol, self.transport)

    def forward(self, frame: Frame) -> None:
        if frame.opcode is Opcode.BINARY:
            self.protocol.send_binary(frame.data)
        else:
            self.protocol.send_text(frame.data)
        flush(self.protocol, self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.protocol = ServerProtocol()
        self.upstream: Upstream | None = None
        self.waiting: list[Frame] = []  # until the upstream connection is open
        self.connecting: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self.protocol.send_response(self.protocol.accept(event))
                url = urlsplit(UPSTREAM)
                loop = asyncio.get_running_loop()
                self.connecting = loop.create_task(loop.create_connection(
                    lambda: Upstream(self), url.hostname, url.port))
            elif isinstance(event, Frame) and event.opcode in (Opcode.BINARY, Opcode.TEXT):
                if self.upstream is not None:
                    self.upstream.forward(event)
                else:
                    self.waiting.append(event)
        flush(self.protocol, self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Client, "127.0.0.1", int(os.environ.get("PORT", "3001")))
    await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
