"""The sans-I/O transport (soniox_widget.transport) over real sockets on 127.0.0.1.

It replaces websockets' asyncio layer for the proxy, so each test checks one thing that
layer gave: handshake refusals and timeouts, TLS, pings and pongs, the closing
handshake, max_size, permessage-deflate, flow control. Peers are websockets' own asyncio
client and server where the other end must be a known-good implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
import ssl

import pytest
import trustme
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from soniox_widget import transport
from soniox_widget.session.core import ReconnectPolicy
from soniox_widget.transport import ConnectionClosedError


async def echo(conn: transport.ServerConnection) -> None:
    conn.on_message = conn.send
    await conn.wait_closed()


@contextlib.asynccontextmanager
async def serving(handler=echo, **options):
    server = await transport.serve(handler, "127.0.0.1", 0, **options)
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class Inbox:
    """Messages of a transport connection, awaitable one by one."""

    def __init__(self, conn: transport.Connection) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        conn.on_message = self.queue.put_nowait

    async def get(self):
        return await self.queue.get()


async def test_text_binary_and_fragmented_messages_arrive_whole(no_task_leaks):
    async with serving(server_header="test-server") as (_, port):
        async with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            assert ws.response.headers["Server"] == "test-server"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.send(["frag", "ment", "ed"])  # three frames, one message
            assert await ws.recv() == "fragmented"
    await no_task_leaks()


async def test_client_sends_and_receives_through_a_websockets_server():
    headers = []

    async def handler(ws):
        headers.append(ws.request.headers)
        async for message in ws:
            await ws.send(message)

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await transport.connect(f"ws://127.0.0.1:{port}/x",
                                       additional_headers={"X-Test": "1"})
        inbox = Inbox(conn)
        conn.send_text("text")
        conn.send_binary(b"bytes")
        assert [await inbox.get(), await inbox.get()] == ["text", b"bytes"]
        conn.close()
        await conn.wait_closed()
    assert conn.close_code == 1000
    assert headers[0]["X-Test"] == "1" and "websockets" in headers[0]["User-Agent"]
    with pytest.raises(ConnectionClosedError):
        conn.send_text("too late")


async def test_refused_upgrade_raises_invalid_status_with_the_response():
    def refuse(conn, request):
        return conn.respond(http.HTTPStatus.FORBIDDEN, "no\n")

    async with serving(process_request=refuse) as (_, port):
        with pytest.raises(InvalidStatus) as caught:
            await transport.connect(f"ws://127.0.0.1:{port}/")
    assert caught.value.response.status_code == 403


async def test_a_process_request_answer_is_sent_as_plain_http():
    def page(conn, request):
        return conn.respond(http.HTTPStatus.NOT_FOUND, "nothing here\n")

    async with serving(process_request=page, server_header="srv") as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await reader.read()  # the server closes after answering
        writer.close()
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"Server: srv" in answer and answer.endswith(b"nothing here\n")


async def test_invalid_url_raises_invalid_uri():
    with pytest.raises(InvalidURI):
        await transport.connect("http://127.0.0.1:1/not-a-websocket")


async def test_refused_tcp_connection_raises_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        await transport.connect(f"ws://127.0.0.1:{port}/")


async def test_a_server_that_never_answers_the_upgrade_times_out(no_task_leaks):
    accepted = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await transport.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
        assert accepted  # TCP was up: it was the upgrade that timed out
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    await no_task_leaks()


@contextlib.asynccontextmanager
async def tcp_that_never_speaks():
    """A listener that accepts TCP and then says nothing (no TLS, no HTTP)."""
    accepted: list[asyncio.StreamWriter] = []
    arrived = asyncio.Event()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        arrived.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted, arrived
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_tls_handshake_that_never_ends_times_out(ca, no_task_leaks):
    """The dial itself (TCP + TLS) has the open timeout too, not only the upgrade."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with tcp_that_never_speaks() as (port, accepted, _):
        with pytest.raises(TimeoutError):
            await transport.connect(f"wss://localhost:{port}/", open_timeout=0.3, ssl=context)
        assert accepted
    await no_task_leaks()


async def test_cancelling_a_connect_during_the_dial_leaves_nothing(ca, no_task_leaks):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with tcp_that_never_speaks() as (port, _, arrived):
        task = asyncio.create_task(
            transport.connect(f"wss://localhost:{port}/", open_timeout=30, ssl=context))
        await asyncio.wait_for(arrived.wait(), 10)  # the server has the TCP connection
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await no_task_leaks()


async def test_server_drops_a_client_that_never_sends_its_upgrade():
    async with serving(open_timeout=0.3) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b""  # closed by the server, nothing said
        writer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_wss_through_tls_with_a_trusted_certificate(ca):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serving(ssl=server_context) as (_, port):
        conn = await transport.connect(f"wss://localhost:{port}/", ssl=client_context)
        inbox = Inbox(conn)
        conn.send_text("over tls")
        assert await inbox.get() == "over tls"
        assert conn.transport.get_extra_info("ssl_object") is not None
        conn.close()
        await conn.wait_closed()
    assert conn.close_code == 1000


async def test_wss_refuses_a_certificate_it_does_not_trust(ca):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    async with serving(ssl=server_context) as (_, port):
        # The default context: the system's authorities, which never signed this one.
        with pytest.raises(ssl.SSLCertVerificationError):
            await transport.connect(f"wss://localhost:{port}/")


async def test_pings_are_answered_automatically():
    async with serving() as (_, port):
        async with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            pong = await ws.ping(b"1234")
            await pong  # our server answered


async def test_a_silent_peer_is_dropped_after_the_ping_timeout(no_task_leaks):
    async def silent(conn: transport.ServerConnection) -> None:
        conn.transport.pause_reading()  # reads nothing, so answers no ping
        await conn.wait_closed()

    async with serving(silent, close_timeout=0.2) as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", ping_interval=0.1,
                                       ping_timeout=0.2)
        await conn.wait_closed()
    assert isinstance(conn.failure, TimeoutError)
    assert conn.close_code == 1006  # no close frame came back
    await no_task_leaks()


async def test_a_live_peer_is_kept_across_many_pings():
    async with serving() as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", ping_interval=0.02,
                                       ping_timeout=1.0)
        inbox = Inbox(conn)
        # Bounded: ten round trips, each long enough for a ping or two.
        for i in range(10):
            await asyncio.sleep(0.03)
            conn.send_text(str(i))
            assert await inbox.get() == str(i)
        assert conn.open
        conn.close()
        await conn.wait_closed()


async def test_close_handshake_gives_both_sides_the_code():
    closed: list[int | None] = []

    async def handler(conn: transport.ServerConnection) -> None:
        await conn.wait_closed()
        closed.append(conn.close_code)

    async with serving(handler) as (server, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/")
        conn.close(4000, "bye")
        await conn.wait_closed()
        while server._handlers:  # bounded by the handler's own end
            await asyncio.wait(set(server._handlers))
    assert conn.close_code == 4000 and closed == [4000]


async def test_close_timeout_ends_a_close_the_peer_never_answers():
    async def deaf(conn: transport.ServerConnection) -> None:
        conn.transport.pause_reading()
        await conn.wait_closed()

    async with serving(deaf, close_timeout=0.2) as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.2)
        conn.close()
        await conn.wait_closed()  # ended by the timeout, not the peer
    assert conn.close_code == 1006


async def test_message_over_max_size_closes_with_1009():
    async with serving(max_size=1000) as (_, port):
        async with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert ws.close_code == 1009


async def test_invalid_utf8_text_closes_with_1007():
    async with serving() as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/")
        conn.protocol.send_text(b"\xff\xfe")  # bypass the check a sender would make
        conn._flush()
        await conn.wait_closed()
    assert conn.close_code == 1007


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_permessage_deflate_only_when_asked(compression):
    async with serving(compression=compression) as (_, port):
        async with ws_connect(f"ws://127.0.0.1:{port}/") as ws:  # offers deflate
            offered_back = ws.response.headers.get("Sec-WebSocket-Extensions")
            await ws.send("a" * 5000)
            assert await ws.recv() == "a" * 5000
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", compression="deflate")
        inbox = Inbox(conn)
        conn.send_text("b" * 5000)
        assert await inbox.get() == "b" * 5000
        conn.close()
        await conn.wait_closed()
    if compression is None:
        assert offered_back is None and conn.response.headers.get(
            "Sec-WebSocket-Extensions") is None
    else:
        assert "permessage-deflate" in offered_back
        assert "permessage-deflate" in conn.response.headers["Sec-WebSocket-Extensions"]


async def test_a_reader_that_stops_reading_pauses_writing_with_bounded_memory():
    """A real socket with a small receive buffer that is not read: the server's
    writes pause once its buffer is over the limit, then resume when it is read."""
    events: list[str] = []
    paused = asyncio.Event()
    resumed = asyncio.Event()
    buffered: list[int] = []
    chunk = b"z" * 16384

    async def flood(conn: transport.ServerConnection) -> None:
        def on_pause() -> None:
            events.append("pause")
            buffered.append(conn.transport.get_write_buffer_size())
            paused.set()

        def on_resume() -> None:
            events.append("resume")
            resumed.set()

        conn.on_pause_writing, conn.on_resume_writing = on_pause, on_resume
        # Writes until the transport says stop (bounded: 4096 x 16 kB = 64 MB at most).
        for _ in range(4096):
            if conn.writing_paused or not conn.open:
                break
            conn.send_binary(chunk)
            await asyncio.sleep(0)
        await conn.wait_writable()
        conn.close()
        await conn.wait_closed()

    async with serving(flood) as (_, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        async with ws_connect(f"ws://127.0.0.1:{port}/", sock=sock,
                              max_size=None, max_queue=1) as ws:
            ws.transport.pause_reading()  # the slow reader: reads nothing for now
            await paused.wait()
            ws.transport.resume_reading()
            received = 0
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    received += len(message)
            await resumed.wait()
    assert events == ["pause", "resume"]
    # Paused at asyncio's limit plus at most the frame that crossed it.
    assert buffered[0] <= transport.connection.WRITE_LIMIT + len(chunk) + 16
    assert received > 0 and received % len(chunk) == 0


async def test_server_close_ends_every_connection_and_handler(no_task_leaks):
    handlers_done: list[int | None] = []

    async def handler(conn: transport.ServerConnection) -> None:
        conn.on_message = conn.send
        try:
            await conn.wait_closed()
        finally:
            handlers_done.append(conn.close_code)

    server = await transport.serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await transport.connect(f"ws://127.0.0.1:{port}/") for _ in range(3)]
    server.close()
    await server.wait_closed()
    for conn in clients:
        await conn.wait_closed()
    assert [c.close_code for c in clients] == [1001] * 3
    assert handlers_done == [1001] * 3
    assert not server.connections
    await no_task_leaks()


async def test_a_peer_this_side_stopped_reading_is_not_dropped_for_its_silence():
    async with serving() as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", ping_interval=0.05,
                                       ping_timeout=0.1)
        inbox = Inbox(conn)
        conn.pause_reading()  # flow control: pongs stay unread meanwhile
        await asyncio.sleep(0.6)  # several ping timeouts long
        assert conn.open
        conn.resume_reading()
        conn.send_text("still here")
        assert await inbox.get() == "still here"
        conn.close()
        await conn.wait_closed()
    assert conn.close_code == 1000


async def test_closing_a_paused_connection_reads_the_close_reply():
    async with serving() as (_, port):
        conn = await transport.connect(f"ws://127.0.0.1:{port}/", close_timeout=10)
        conn.pause_reading()
        conn.close()
        await conn.wait_closed()
    assert conn.close_code == 1000  # a handshake, not the timeout's abort (1006)


# -- the upstream session over wss:// (Soniox's scheme), through the system's TLS defaults --


def _tls_echo_server(ca: trustme.CA):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    store: list[object] = []

    async def handler(ws) -> None:
        store.append(ws.request.headers.get("Authorization"))
        async for message in ws:
            store.append(message)
            if message == b"":
                await ws.send('{"tokens": [], "finished": true}')
                await ws.close()
                return
    return ws_serve(handler, "127.0.0.1", 0, ssl=context), store


async def test_upstream_session_speaks_wss_with_the_default_tls_context(ca, tmp_path,
                                                                        monkeypatch,
                                                                        no_task_leaks):
    from soniox_widget.upstream import UpstreamSession

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # what create_default_context trusts
    serving_tls, store = _tls_echo_server(ca)
    async with serving_tls as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with UpstreamSession(api_key="test-key-123",
                                   url=f"wss://localhost:{port}/transcribe-websocket"
                                   ) as session:
            session.send_audio(b"pcm bytes")
            session.end()
            await session.wait_finished()
    assert store[0] == "Bearer test-key-123"  # the key goes in the handshake header only
    assert json.loads(store[1])["model"]  # the start message
    assert store[2:] == [b"pcm bytes", b""]
    await no_task_leaks()


async def test_upstream_session_refuses_an_untrusted_certificate_without_the_key(
        ca, no_task_leaks):
    from soniox_widget.errors import SonioxError
    from soniox_widget.upstream import UpstreamSession

    serving_tls, _ = _tls_echo_server(ca)
    async with serving_tls as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with UpstreamSession(api_key="test-key-123",
                                   url=f"wss://localhost:{port}/transcribe-websocket",
                                   reconnect=ReconnectPolicy(max_attempts=0)) as session:
            with pytest.raises(SonioxError) as caught:
                await session.wait_connected()
    assert "cannot connect" in str(caught.value)
    assert "certificate" in str(caught.value).lower()
    assert "test-key-123" not in str(caught.value)
    await no_task_leaks()
