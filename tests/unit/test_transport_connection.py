"""The transport's connection without sockets: bytes in through data_received, bytes out
through a recording transport, frames built by websockets' own client protocol."""

from __future__ import annotations

import asyncio

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from soniox_widget.transport.connection import Connection


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Opened(Connection):
    """A server-side connection that accepts the upgrade as it arrives."""

    def _handshake_event(self, event) -> None:
        if isinstance(event, Request):
            self.protocol.send_response(self.protocol.accept(event))
            self._flush()
            self._opened_now()


def open_pair() -> tuple[Opened, ClientProtocol, RecordingTransport]:
    """A server connection past its handshake, and the client protocol that talks to it."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    client.send_request(client.connect())
    server = Opened(ServerProtocol(), ping_interval=None, open_timeout=None)
    transport = RecordingTransport()
    server.connection_made(transport)
    for data in client.data_to_send():
        server.data_received(data)
    client.receive_data(bytes(transport.written))
    client.events_received()
    transport.written.clear()
    return server, client, transport


def feed(server: Connection, client: ClientProtocol) -> None:
    for data in client.data_to_send():
        server.data_received(data)


async def test_messages_before_the_callback_is_set_are_kept_in_order():
    server, client, _ = open_pair()
    client.send_text(b"one")
    client.send_binary(b"two")
    feed(server, client)
    got: list = []
    server.on_message = got.append
    client.send_text(b"three")
    feed(server, client)
    assert got == ["one", b"two", "three"]


async def test_fragments_make_one_message_of_the_right_type():
    server, client, _ = open_pair()
    got: list = []
    server.on_message = got.append
    client.send_binary(b"ab", fin=False)
    client.send_continuation(b"cd", fin=False)
    client.send_continuation(b"ef", fin=True)
    client.send_text("é".encode()[:1], fin=False)  # a character split across frames
    client.send_continuation("é".encode()[1:], fin=True)
    feed(server, client)
    assert got == [b"abcdef", "é"]


async def test_sends_are_written_at_once_as_frames():
    server, client, transport = open_pair()
    server.send_text("hello")
    server.send_binary(b"\x00\x01")
    client.receive_data(bytes(transport.written))
    frames = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, bytes(f.data)) for f in frames] == [
        (Opcode.TEXT, b"hello"), (Opcode.BINARY, b"\x00\x01")]


async def test_a_ping_is_answered_by_a_pong():
    server, client, transport = open_pair()
    client.send_ping(b"abcd")
    feed(server, client)
    client.receive_data(bytes(transport.written))
    pongs = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, bytes(f.data)) for f in pongs] == [(Opcode.PONG, b"abcd")]


async def test_a_callback_that_raises_fails_the_connection_with_1011():
    server, client, transport = open_pair()

    def broken(message) -> None:
        raise RuntimeError("boom")

    server.on_message = broken
    client.send_text(b"x")
    feed(server, client)
    assert not server.open
    client.receive_data(bytes(transport.written))
    closes = [e for e in client.events_received()
              if isinstance(e, Frame) and e.opcode is Opcode.CLOSE]
    assert closes and client.close_rcvd.code == 1011


async def test_write_pause_and_resume_reach_the_owner_and_waiters():
    server, _, _ = open_pair()
    seen: list[str] = []
    server.on_pause_writing = lambda: seen.append("pause")
    server.on_resume_writing = lambda: seen.append("resume")
    server.pause_writing()
    waiter = asyncio.ensure_future(server.wait_writable())
    await asyncio.sleep(0)
    assert not waiter.done()  # no room yet
    server.resume_writing()
    await waiter
    assert seen == ["pause", "resume"] and not server.writing_paused


async def test_connection_lost_ends_wait_closed_and_calls_on_close():
    server, _, _ = open_pair()
    closed: list[bool] = []
    server.on_close = lambda: closed.append(True)
    server.connection_lost(None)
    await server.wait_closed()
    assert closed == [True] and server.close_code == 1006
