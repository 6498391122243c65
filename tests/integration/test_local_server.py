"""A raw WebSocket client ⇄ the local Soniox-compatible server: errors and deadlines."""

import asyncio
import datetime
import json
import logging

import pytest
from websockets.asyncio.client import connect

from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.local import server as local_server_module
from soniox_widget.protocol import StartMessage, encode_client_message

START = encode_client_message(StartMessage({"model": "stt-rt-v5", "audio_format": "auto"}))
AUDIO = bytes(range(256)) * 4


async def session(url: str, frames) -> tuple[list[dict], int | None]:
    """Send ``frames``, then read every reply until the server closes (bounded)."""
    async with connect(url) as ws:
        for frame in frames:
            await ws.send(frame)
        replies = await asyncio.wait_for(_all_replies(ws), 10)
        return replies, ws.close_code


async def _all_replies(ws) -> list[dict]:
    return [json.loads(m) async for m in ws]


def no_handler_errors(caplog) -> bool:
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("frame", "words"), [
    ('{"type": "finalize", "trailing_silence_ms": -5}', "non-negative integer"),
    ('{"type": "stop"}', "unknown control message type 'stop'"),
    ("hello", "binary"),
    ("[" * 200_000, "text message"),
    ('{"type": ' * 100 + "1" + "}" * 100, "nested too deeply"),
])
async def test_bad_control_frame_gets_a_400_and_a_close(local_server, frame, words, caplog,
                                                        no_task_leaks):
    replies, close_code = await session(local_server.url, [START, AUDIO[:300], frame])
    assert replies[-1]["error_code"] == 400
    assert words in replies[-1]["error_message"]
    assert close_code == 1000
    record = local_server.sessions[0]
    await asyncio.wait_for(record.done.wait(), 5)
    assert record.error is not None and record.error[0] == 400
    assert not record.client_went_away and not record.finished
    assert record.finalize_requests == 0
    assert no_handler_errors(caplog)
    await no_task_leaks()


@pytest.mark.parametrize(("frame", "words"), [
    (b"\x00\x01", "not audio"),
    ("not json", "not valid JSON"),
    ('["model"]', "must be a JSON object"),
    ("[" * 200_000, "start message"),
    ('{"context": ' * 100 + "{}" + "}" * 100, "nested too deeply"),
    ('{"model": "stt-rt-v5", "audio_format": "pcm_s16le"}', "invalid start message"),
])
async def test_bad_start_message_gets_a_400_and_a_close(local_server, frame, words, caplog,
                                                        no_task_leaks):
    replies, close_code = await session(local_server.url, [frame])
    assert replies == [{"error_code": 400, "error_message": replies[0]["error_message"]}]
    assert words in replies[0]["error_message"]
    assert close_code == 1000
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert no_handler_errors(caplog)
    await no_task_leaks()


async def test_api_key_in_the_start_message_is_refused_from_the_cutoff(
        local_server, monkeypatch, caplog, no_task_leaks):
    monkeypatch.setattr(local_server_module, "utc_today", lambda: datetime.date(2027, 1, 15))
    frame = '{"model": "stt-rt-v5", "audio_format": "auto", "api_key": "k-in-start"}'
    replies, close_code = await session(local_server.url, [frame])
    assert replies == [{"error_code": 400, "error_message": replies[0]["error_message"]}]
    assert "no longer accepted" in replies[0]["error_message"]
    assert "send it with the connection" in replies[0]["error_message"]
    assert close_code == 1000
    record = local_server.sessions[0]
    await asyncio.wait_for(record.done.wait(), 5)
    assert record.start_message == {"model": "stt-rt-v5", "audio_format": "auto"}
    assert no_handler_errors(caplog)
    await no_task_leaks()


async def test_no_start_message_gets_a_408(engine, no_task_leaks):
    async with LocalSonioxServer(engine, idle_timeout=0.3) as server:
        replies, _ = await session(server.url, [])
        await asyncio.wait_for(server.sessions[0].done.wait(), 5)
    assert replies == [{"error_code": 408, "error_message": "no start message received; "
                        "send the JSON configuration first"}]
    assert server.sessions[0].error[0] == 408
    await no_task_leaks()


async def test_a_silent_session_gets_a_408(engine, no_task_leaks):
    async with LocalSonioxServer(engine, idle_timeout=0.3) as server:
        replies, _ = await session(server.url, [START, AUDIO[:300]])
        record = server.sessions[0]
        await asyncio.wait_for(record.done.wait(), 5)
    assert replies[-1] == {"error_code": 408, "error_message": "no audio or keepalive "
                           "received for 0.3 s; the session was closed"}
    assert record.audio_bytes == 300
    assert not record.client_went_away and not record.finished
    await no_task_leaks()


async def test_keepalives_keep_a_session_open(engine, no_task_leaks):
    async with LocalSonioxServer(engine, idle_timeout=0.5) as server:
        async with connect(server.url) as ws:
            await ws.send(START)
            await ws.send(AUDIO[:300])
            for _ in range(12):  # 1.2 s of keepalives: well past the idle timeout
                await ws.send('{"type": "keepalive"}')
                await asyncio.sleep(0.1)
            await ws.send(b"")
            replies = await asyncio.wait_for(_all_replies(ws), 10)
    assert not any("error_code" in r for r in replies), replies
    assert replies[-1]["finished"] is True
    assert server.sessions[0].keepalives == 12
    await no_task_leaks()


async def test_engine_failure_reaches_a_client_that_is_only_listening(no_task_leaks):
    """The pump's failure ends the session while the server waits for the client's next frame."""
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=500)
    async with LocalSonioxServer(engine) as server:
        replies, close_code = await session(server.url, [START, AUDIO[:600]])
        record = server.sessions[0]
        await asyncio.wait_for(record.done.wait(), 5)
    assert replies[-1]["error_code"] == 503
    assert close_code == 1000
    assert record.error[0] == 503 and not record.client_went_away
    await no_task_leaks()


async def test_finished_session_then_close(local_server, engine, no_task_leaks):
    replies, close_code = await session(
        local_server.url, [START, AUDIO[:300], '{"type": "finalize", "trailing_silence_ms": 0}',
                           AUDIO[300:600], ""])
    assert close_code == 1000
    assert replies[-1]["finished"] is True
    texts = [t["text"] for r in replies for t in r.get("tokens", [])]
    assert "<fin>" in texts
    record = local_server.sessions[0]
    await asyncio.wait_for(record.done.wait(), 5)
    assert record.finished and record.error is None and not record.client_went_away
    assert (record.audio_bytes, record.finalize_requests) == (600, 1)
    await no_task_leaks()


async def test_client_going_away_mid_stream_is_recorded(local_server, no_task_leaks):
    async with connect(local_server.url) as ws:
        await ws.send(START)
        await ws.send(AUDIO[:300])
        await ws.recv()
    record = local_server.sessions[0]
    await asyncio.wait_for(record.done.wait(), 5)
    assert record.client_went_away and record.error is None
    await no_task_leaks()
