"""The fault-injection tools themselves (tests/faults.py, tests/standin.py), checked with a
plain WebSocket client against the real local server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)

from tests import standin
from tests.faults import FaultyRelay

START = json.dumps({"model": "stt-rt-v5", "audio_format": "auto"})
AUDIO = bytes(range(256)) * 4  # 1024 bytes: 10 words at 100 bytes a word
FRAME = 100  # audio bytes per frame; on the wire 106 (2 header + 4 mask bytes)
# A socket closed during the handshake: no HTTP response (InvalidMessage) or a reset.
CONNECT_FAILED = (InvalidHandshake, OSError)


def open_ws(url: str) -> connect:
    # No permessage-deflate, so frame sizes on the wire are predictable.
    return connect(url, open_timeout=5, close_timeout=2, proxy=None, compression=None)


async def next_reply(ws: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


def finals(reply: dict) -> str:
    return "".join(t["text"] for t in reply["tokens"] if t["is_final"])


async def finish(ws: ClientConnection, text: str = "") -> str:
    """End the stream and fold the replies until ``finished``; the final text (``text``
    holds the final text of replies read before)."""
    await ws.send(b"")
    for _ in range(1000):
        reply = await next_reply(ws)
        assert "error_code" not in reply, reply
        text += finals(reply)
        if reply.get("finished"):
            return text
    raise AssertionError("no 'finished' reply")


async def closed_by_peer(ws: ClientConnection) -> ConnectionClosed:
    """Read until the connection is gone (bounded); the exception recv raised."""
    for _ in range(1000):
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            return exc
    raise AssertionError("the connection stayed open")


async def send_audio(ws: ClientConnection, audio: bytes) -> None:
    for i in range(0, len(audio), FRAME):
        await ws.send(audio[i : i + FRAME])


async def test_a_session_through_the_relay_is_normal(local_server, engine, no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO)
            text = await finish(ws)
        assert relay.url().endswith(f":{relay.port}/transcribe-websocket")
        assert relay.connections == 1 and relay.drops == 0
        assert relay.client_to_server_bytes > len(AUDIO)  # + handshake and framing
        assert relay.server_to_client_bytes > 0
    assert text == engine.text_for(AUDIO)
    assert bytes(local_server.sessions[0].audio) == AUDIO
    await no_task_leaks()


async def test_drop_cuts_both_sides_without_a_close_frame(local_server, engine, no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO[:200])
            await next_reply(ws)
            assert not relay.dropped.is_set() and relay.open_connections == 1
            assert await relay.drop() == 1
            assert relay.open_connections == 0
            exc = await closed_by_peer(ws)
        assert exc.rcvd is None and exc.sent is None  # abnormal closure, 1006
        assert relay.dropped.is_set() and relay.drops == 1
        record = local_server.sessions[0]
        await asyncio.wait_for(record.done.wait(), 5)
        assert record.client_went_away and not record.finished

        # The relay still accepts connections after a drop.
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO)
            assert await finish(ws) == engine.text_for(AUDIO)
        assert relay.connections == 2
    await no_task_leaks()


async def test_drop_after_cuts_once_n_more_bytes_went_through(local_server, no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO[:200])
            for _ in range(2):  # one reply per frame: the server has read both frames
                await next_reply(ws)
            before = relay.client_to_server_bytes
            relay.drop_after(5 * (FRAME + 6) + 50)  # five frames and half of the sixth
            await send_audio(ws, AUDIO[200:])  # eight frames
            await asyncio.wait_for(relay.dropped.wait(), 5)
            exc = await closed_by_peer(ws)
        assert exc.rcvd is None
        assert relay.client_to_server_bytes - before == 5 * (FRAME + 6) + 50
        assert relay.drops == 1
        record = local_server.sessions[0]
        await asyncio.wait_for(record.done.wait(), 5)
        assert record.client_went_away
        assert 200 <= record.audio_bytes <= 700  # the half frame never counts
        assert record.audio_bytes < len(AUDIO)

        # One-shot: the next connection is not cut.
        relay.dropped.clear()
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO)
            await finish(ws)
        assert relay.drops == 1 and not relay.dropped.is_set()
    await no_task_leaks()


async def test_drop_after_armed_before_connecting_counts_from_the_first_byte(local_server,
                                                                             no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        relay.drop_after(10)  # inside the HTTP upgrade request
        with pytest.raises(CONNECT_FAILED):
            async with open_ws(relay.url()):
                pass
        assert relay.client_to_server_bytes == 10 and relay.drops == 1
        assert relay.dropped.is_set()
    await no_task_leaks()


async def test_stall_holds_bytes_until_unstall(local_server, engine, no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        async with open_ws(relay.url()) as ws:
            await ws.send(START)
            await send_audio(ws, AUDIO[:100])
            text = finals(await next_reply(ws))
            record = local_server.sessions[0]
            assert record.replies_sent == 1  # nothing else is on its way to the client

            relay.stall()
            await send_audio(ws, AUDIO[100:200])
            await asyncio.wait_for(relay.holding.wait(), 5)
            assert relay.held_bytes == FRAME + 6
            assert record.audio_bytes == 100  # held, not forwarded
            assert ws.state.name == "OPEN" and relay.drops == 0

            relay.unstall()
            reply = await next_reply(ws)
            assert len(reply["tokens"]) == 2  # the second word arrived
            assert record.audio_bytes == 200 and relay.held_bytes == 0
            text += finals(reply)
            await send_audio(ws, AUDIO[200:])
            assert await finish(ws, text) == engine.text_for(AUDIO)
    await no_task_leaks()


async def test_refuse_new_makes_connecting_fail(local_server, no_task_leaks):
    async with FaultyRelay(local_server.port) as relay:
        async with open_ws(relay.url()) as kept:
            await kept.send(START)
            relay.refuse_new(True)
            with pytest.raises(CONNECT_FAILED):
                async with open_ws(relay.url()):
                    pass
            assert relay.refused == 1 and relay.connections == 1

            # A connection opened before keeps working.
            await send_audio(kept, AUDIO[:300])
            await finish(kept)

            relay.refuse_new(False)
            async with open_ws(relay.url()) as ws:
                await ws.send(START)
                await finish(ws)
        assert relay.connections == 2
    await no_task_leaks()


@pytest.mark.parametrize("status", [401, 403, 429, 503])
async def test_stand_in_refuses_the_handshake(status, no_task_leaks):
    async with standin.StandIn(standin.refuses_handshake(status)) as server:
        with pytest.raises(InvalidStatus) as info:
            async with open_ws(server.url):
                pass
        assert server.connections == 0  # the behaviour never ran
    assert info.value.response.status_code == status
    await no_task_leaks()


async def test_stand_in_error_after_audio(no_task_leaks):
    behaviour = standin.error_after_audio(503, "Cannot continue request", after_bytes=250)
    async with standin.StandIn(behaviour) as server, open_ws(server.url) as ws:
        await ws.send(START)
        await ws.send(json.dumps({"type": "keepalive"}))
        await send_audio(ws, AUDIO[:300])
        reply = await next_reply(ws)
        exc = await closed_by_peer(ws)
    assert reply == {"error_code": 503, "error_message": "Cannot continue request"}
    assert isinstance(exc, ConnectionClosedOK)
    await no_task_leaks()


async def test_stand_in_floods_replies_up_to_its_limit(no_task_leaks):
    async with standin.StandIn(standin.floods_replies(limit=50)) as server, \
            open_ws(server.url) as ws:
        await ws.send(START)
        replies = [await next_reply(ws) for _ in range(50)]
        exc = await closed_by_peer(ws)
    assert replies[0] == {"tokens": [{"text": " x", "is_final": False}]}
    assert isinstance(exc, ConnectionClosedOK)
    await no_task_leaks()


async def test_closing_the_relay_closes_its_connections(local_server, no_task_leaks):
    relay = FaultyRelay(local_server.port)
    async with relay, open_ws(relay.url()) as ws:
        await ws.send(START)
        relay.stall()  # a stalled connection is closed too
        await send_audio(ws, AUDIO[:100])
        await asyncio.wait_for(relay.holding.wait(), 5)
        await relay.aclose()
        exc = await closed_by_peer(ws)
    assert exc.rcvd is None
    await no_task_leaks()
