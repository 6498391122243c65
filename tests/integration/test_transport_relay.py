"""Flow control through the proxy, with real sockets: a stalled side stalls the other.

The proxy relays on soniox_widget.transport, where nothing waits per message, so
backpressure is explicit: a client that does not read pauses reading the upstream,
an upstream that does not read pauses reading the client. Without it, the proxy
would buffer everything the other side sends (here 64 MB) in its own memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket

from websockets.asyncio.client import connect

from soniox_widget.backend import Backend
from soniox_widget.proxy import ProxyServer
from soniox_widget.transport.connection import WRITE_LIMIT
from tests import standin

BIG = 32 * 1024
TOTAL = 2048  # messages of BIG bytes: 64 MB, far more than any socket buffers


def backend_for(url: str) -> Backend:
    return Backend(url, None, "test server", is_local=True)


async def small_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def until_stalled(progress, limit: int) -> int:
    """Poll ``progress()`` until it stops moving for 0.3 s or reaches ``limit`` (at most
    20 s: a bounded wait for a side to block, which no single event announces)."""
    last, still = -1, 0
    for _ in range(400):
        now = progress()
        if now >= limit:
            return now
        still = still + 1 if now == last else 0
        if still >= 6:
            return now
        last = now
        await asyncio.sleep(0.05)
    return progress()


async def test_a_client_that_does_not_read_stops_the_upstream_reading(no_task_leaks):
    reply = json.dumps({"tokens": [{"text": "x" * BIG, "is_final": False}]})
    sent = [0]
    done = asyncio.Event()

    async def flood(ws) -> None:
        await standin.read_start(ws)
        await ws.recv()  # the first audio frame
        for _ in range(TOTAL):
            await ws.send(reply)
            sent[0] += 1
        await ws.send('{"tokens": [], "finished": true}')
        done.set()
        async for _ in ws:  # until the proxy hangs up
            pass

    async with standin.StandIn(flood) as upstream, \
            ProxyServer(backend_for(upstream.url), port=0, idle_timeout=None) as proxy:
        sock = await small_buffer_socket(proxy.port)
        async with connect(proxy.ws_url, sock=sock, max_size=None, max_queue=1,
                           ping_interval=None) as ws:
            ws.transport.pause_reading()  # the slow client: reads nothing for now
            await ws.send(b"audio")
            stalled_at = await until_stalled(lambda: sent[0], TOTAL)
            assert stalled_at < TOTAL, "the proxy took every reply: nothing held it back"
            (client_conn,) = proxy._server.connections
            assert client_conn.writing_paused
            assert client_conn.transport.get_write_buffer_size() <= WRITE_LIMIT + 2 * BIG
            ws.transport.resume_reading()  # now it reads: everything arrives, in order
            received = []
            async for message in ws:
                received.append(message)
        await done.wait()
    assert received[:-1] == [reply] * TOTAL
    assert json.loads(received[-1])["finished"] is True
    await no_task_leaks()


async def test_an_upstream_that_does_not_read_stops_the_client_reading(no_task_leaks):
    audio = [bytes([i % 251]) * BIG for i in range(TOTAL)]
    got = bytearray()
    reading = asyncio.Event()

    async def slow(ws) -> None:
        await standin.read_start(ws)
        await reading.wait()  # reads no audio until the test says so
        async for message in ws:
            if message == b"":
                await ws.send('{"tokens": [], "finished": true}')
                break
            got.extend(message)
        await ws.close()

    # A short idle timeout: a client held back by flow control is not idle.
    async with standin.StandIn(slow) as upstream, \
            ProxyServer(backend_for(upstream.url), port=0, idle_timeout=0.2) as proxy:
        sock = await small_buffer_socket(proxy.port)
        async with connect(proxy.ws_url, sock=sock, ping_interval=None,
                           compression=None) as ws:
            sent = [0]

            async def send_all() -> None:
                for frame in audio:
                    await ws.send(frame)
                    sent[0] += 1
                await ws.send("")

            sender = asyncio.create_task(send_all())
            stalled_at = await until_stalled(lambda: sent[0], TOTAL)
            assert stalled_at < TOTAL, "the proxy took all the audio: nothing held it back"
            reading.set()  # the upstream reads again: the rest flows, in order
            await sender
            replies = [json.loads(m) async for m in ws]
    assert replies[-1]["finished"] is True
    assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(audio)).digest()
    await no_task_leaks()


async def test_stop_closes_every_client_and_upstream_with_nothing_left_running(
        local_server, no_task_leaks, caplog):
    caplog.set_level(logging.INFO, logger="soniox_widget.proxy.server")
    proxy = ProxyServer(backend_for(local_server.url), port=0)
    await proxy.start()
    clients = [await connect(proxy.ws_url) for _ in range(3)]
    for ws in clients:
        await ws.send(b"\x01" * 500)
        await ws.recv()  # its session is open upstream and answering
    await proxy.stop()
    for ws in clients:
        await ws.wait_closed()
    assert [ws.close_code for ws in clients] == [1001] * 3  # going away
    assert proxy.open_sessions == 0
    for record in local_server.sessions:
        await record.done.wait()  # every upstream session ended too
    assert len(local_server.sessions) == 3
    # Said as it is: the proxy closed them, the clients did not go away.
    logged = [r.getMessage() for r in caplog.records]
    assert sum("the proxy is stopping" in m for m in logged) == 3
    assert not any("went away" in m for m in logged)
    await no_task_leaks()
