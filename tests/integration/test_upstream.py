"""UpstreamSession against real servers on 127.0.0.1 (the local server and stand-ins)."""

import asyncio
import hashlib
import json
import socket

import pytest

from soniox_widget import SonioxConfig, SonioxError, Transcript, UpstreamSession
from soniox_widget.errors import MissingAPIKeyError
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.session import NO_RECONNECT
from tests import standin

AUDIO = bytes(range(256)) * 40  # 10240 bytes


async def run_session(session: UpstreamSession, audio: bytes, step: int = 333) -> Transcript:
    t = Transcript()
    for i in range(0, len(audio), step):
        session.send_audio(audio[i : i + step])
    session.end()
    async for reply in session.replies():
        t.apply(reply)
    return t


async def test_audio_in_order_and_text_back(local_server, engine, no_task_leaks):
    async with UpstreamSession(url=local_server.url) as session:
        t = await run_session(session, AUDIO)
    record = local_server.sessions[0]
    assert record.audio_bytes == len(AUDIO) == session.bytes_sent
    assert record.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert bytes(record.audio) == AUDIO
    assert t.final_text == engine.text_for(AUDIO)
    assert t.finished and record.finished
    assert record.start_message == {"model": "stt-rt-v5", "audio_format": "auto"}
    await no_task_leaks()


async def test_audio_sent_before_the_connection_is_open_is_kept(local_server, engine):
    session = UpstreamSession(url=local_server.url)
    session.send_audio(AUDIO[:5000])  # not even started yet
    session.start()
    session.send_audio(AUDIO[5000:])
    async with session:
        t = await run_session(session, b"")
    assert local_server.sessions[0].audio_bytes == len(AUDIO)
    assert t.final_text == engine.text_for(AUDIO)


async def test_nonfinal_then_final_and_finalize(local_server):
    seen_nonfinal = []
    async with UpstreamSession(url=local_server.url) as session:
        session.send_audio(AUDIO[:350])
        session.finalize(trailing_silence_ms=300)
        session.end()
        t = Transcript()
        async for reply in session.replies():
            if reply.nonfinal_tokens:
                seen_nonfinal.append(reply.nonfinal_tokens[0].text)
            t.apply(reply)
    assert seen_nonfinal, "words should appear as non-final before they are final"
    assert [e.kind for e in t.events] == ["finalized"]
    assert len(t.final_tokens) == 3
    assert local_server.sessions[0].finalize_requests == 1


async def test_keepalive_flows_while_paused(local_server):
    async with UpstreamSession(url=local_server.url, keepalive_interval=0.05) as session:
        await session.wait_connected()
        await asyncio.sleep(0.4)
        t = await run_session(session, AUDIO[:300])
    assert local_server.sessions[0].keepalives >= 3
    assert t.finished


async def test_bearer_header_not_start_message(engine):
    key = "local-secret-key"
    async with LocalSonioxServer(engine, api_key=key) as server:
        async with UpstreamSession(url=server.url, api_key=key) as session:
            await run_session(session, AUDIO[:500])
        assert server.sessions[0].authorized_by_header
        assert "api_key" not in json.dumps(server.sessions[0].start_message)


async def test_refused_handshake_is_a_clear_error_without_the_key(engine, no_task_leaks):
    async with LocalSonioxServer(engine, api_key="right") as server:
        session = UpstreamSession(url=server.url, api_key="wrong-secret-value")
        with pytest.raises(SonioxError) as info:
            async with session:
                await run_session(session, AUDIO[:100])
    err = info.value
    assert err.reason == "handshake" and err.error_code == 401
    assert "SONIOX_API_KEY" in str(err)
    assert "wrong-secret-value" not in str(err) + repr(err) + repr(session)
    await no_task_leaks()


async def test_unreachable_upstream(no_task_leaks):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = UpstreamSession(url=f"ws://127.0.0.1:{port}/transcribe-websocket",
                              connect_timeout=2)
    session.send_audio(b"abc")
    with pytest.raises(SonioxError, match="cannot connect") as info:
        async with session:
            await session.wait_connected()
    assert info.value.reason == "connect" and info.value.retryable
    await no_task_leaks()


async def test_error_reply_carries_code_and_message(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=1000)
    async with LocalSonioxServer(engine) as server:
        async with UpstreamSession(url=server.url, reconnect=NO_RECONNECT) as session:
            with pytest.raises(SonioxError) as info:
                await run_session(session, AUDIO)
    assert info.value.error_code == 503
    assert "restart the request" in info.value.error_message
    assert info.value.retryable
    await no_task_leaks()


async def test_server_refuses_a_bad_start_message_with_400():
    async with LocalSonioxServer(ScriptedEngine()) as server:
        # Skip client-side validation to see what the server does with a bad message.
        session = UpstreamSession(url=server.url)
        object.__setattr__(session.config, "audio_format", "pcm_s16le")
        with pytest.raises(SonioxError) as info:
            async with session:
                await run_session(session, AUDIO[:100])
    assert info.value.error_code == 400
    assert "sample_rate" in info.value.error_message


@pytest.mark.parametrize("behaviour,reason", [
    (standin.closes_after_first_audio(), "connection_lost"),
    (standin.answers_garbage(), "protocol"),
])
async def test_misbehaving_upstream(behaviour, reason, no_task_leaks):
    async with standin.StandIn(behaviour) as server:
        async with UpstreamSession(url=server.url, reconnect=NO_RECONNECT) as session:
            with pytest.raises(SonioxError) as info:
                await run_session(session, AUDIO)
    assert info.value.reason == reason
    await no_task_leaks()


async def test_timeout_waiting_for_finished(no_task_leaks):
    async with standin.StandIn(standin.never_finishes()) as server:
        async with UpstreamSession(url=server.url, finish_timeout=0.5) as session:
            with pytest.raises(SonioxError, match="no 'finished' reply") as info:
                await run_session(session, AUDIO[:100])
    assert info.value.reason == "timeout"
    await no_task_leaks()


async def test_closing_mid_stream_leaves_nothing(local_server, no_task_leaks):
    session = UpstreamSession(url=local_server.url)
    session.start()
    session.send_audio(AUDIO)
    await session.wait_connected()
    await session.aclose()
    await session.aclose()  # idempotent
    with pytest.raises(SonioxError, match="closed"):
        session.send_audio(b"more")
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert local_server.sessions[0].client_went_away
    await no_task_leaks()


async def test_message_order_on_the_wire():
    store: list[object] = []
    async with standin.StandIn(standin.records_messages(store)) as server:
        cfg = SonioxConfig(language_hints=["en"])
        async with UpstreamSession(cfg, url=server.url) as session:
            session.send_audio(b"one")
            session.finalize()
            session.send_audio(b"two")
            await run_session(session, b"")
    assert json.loads(store[0]) == {"model": "stt-rt-v5", "audio_format": "auto",
                                    "language_hints": ["en"]}
    assert store[1:] == [b"one", '{"type": "finalize"}', b"two", b""]


def test_soniox_url_without_a_key_fails_before_connecting():
    with pytest.raises(MissingAPIKeyError, match="SONIOX_API_KEY"):
        UpstreamSession(engine="soniox")
    # A regional host is Soniox too: refused at construction, not at the first audio.
    with pytest.raises(MissingAPIKeyError, match="SONIOX_API_KEY"):
        UpstreamSession(url="wss://stt-rt.eu.soniox.com/transcribe-websocket")


async def test_end_sent_during_a_receive_poll_is_not_a_timeout():
    """Regression: an end of stream sent while the receive loop polled (1 s), with the
    'finished' reply arriving after that poll ran out, was taken for an expired deadline."""
    store: list[object] = []
    async with standin.StandIn(standin.records_messages(store, finish_delay=0.6)) as server:
        async with UpstreamSession(url=server.url, finish_timeout=5) as session:
            await session.wait_connected()
            await asyncio.sleep(0.7)
            session.end()
            t = await run_session(session, b"")
    assert t.finished


@pytest.mark.parametrize("frame", [
    '{"tokens": [], "final_audio_proc_ms": Infinity}',
    '{"error_code": 1e400, "error_message": "x"}',
    '{"tokens": [{"text": "a", "is_final": true, "start_ms": NaN}]}',
    '{"tokens": [{"text": "a", "is_final": true, "start_ms": 1e400}]}',
    "[" * 100_000,
])
async def test_odd_numbers_and_deep_nesting_in_a_reply_end_the_session_clearly(
        frame, no_task_leaks):
    """Regression: NaN/Infinity/overflow/recursion escaped the parser, killed the
    connection task silently and left the session 'streaming' for good."""
    async def run(ws):
        await standin.read_start(ws)
        await ws.send(frame)
        async for _ in ws:
            pass

    async with standin.StandIn(run) as server:
        async with UpstreamSession(url=server.url, reconnect=NO_RECONNECT) as session:
            session.send_audio(AUDIO[:100])
            session.end()
            with pytest.raises(SonioxError) as info:
                await asyncio.wait_for(session.wait_finished(), 5)
    if "error_code" in frame:
        assert info.value.error_code is None  # an unusable code is no code
    else:
        assert info.value.reason == "protocol"
    await no_task_leaks()


# -- the relay's way in and out: write_audio and on_text ------------------------------------


async def test_on_text_gets_every_reply_as_text_before_wait_finished_returns(local_server,
                                                                          engine,
                                                                          no_task_leaks):
    got: list[str] = []
    loop = asyncio.get_running_loop()

    def on_text(text: str) -> None:
        got.append(text)
        # A receiver that takes its time: it stops the reading after each reply and
        # resumes it on the loop's next turn (as a relay does while its client is slow).
        session.pause_reading()
        loop.call_soon(session.resume_reading)

    async with UpstreamSession(url=local_server.url, on_text=on_text) as session:
        for i in range(0, len(AUDIO), 1000):
            await session.write_audio(AUDIO[i : i + 1000])
        session.end()
        await session.wait_finished()
        assert [r async for r in session.replies()] == []  # they all went to on_text
    replies = [json.loads(t) for t in got]
    assert replies[-1].get("finished") is True
    final = "".join(t["text"] for r in replies for t in r["tokens"] if t["is_final"])
    assert final == engine.text_for(AUDIO)
    await no_task_leaks()


async def test_write_audio_and_send_audio_mixed_keep_the_byte_order(no_task_leaks):
    store: list[object] = []
    async with standin.StandIn(standin.records_messages(store)) as server:
        async with UpstreamSession(url=server.url, reconnect=NO_RECONNECT) as session:
            session.send_audio(AUDIO[:100])  # queued before the connection is up
            await session.wait_connected()
            for i in range(100, len(AUDIO), 500):
                if i % 1000 == 100:
                    await session.write_audio(AUDIO[i : i + 500])
                else:
                    session.send_audio(AUDIO[i : i + 500])
            session.finalize()
            await session.write_audio(b"tail")
            session.end()
            await session.wait_finished()
    audio = b"".join(m for m in store if isinstance(m, bytes))
    assert audio == AUDIO + b"tail"
    assert store[-1] == b""
    # The finalize went out after the audio given before it, and before the tail.
    texts = [i for i, m in enumerate(store) if isinstance(m, str) and "finalize" in m]
    assert len(texts) == 1 and store[texts[0] + 1] == b"tail"
    await no_task_leaks()


async def test_an_on_text_that_fails_ends_the_session_with_an_error(local_server,
                                                                   no_task_leaks):
    def on_text(text: str) -> None:
        raise RuntimeError("the receiver broke")

    async with UpstreamSession(url=local_server.url, on_text=on_text) as session:
        await session.write_audio(AUDIO[:1000])
        session.end()
        with pytest.raises(SonioxError, match="RuntimeError"):
            await session.wait_finished()
    assert session.state.value == "failed"
    await no_task_leaks()


async def test_keepalives_follow_audio_and_replies_that_left_the_timer_alone(local_server):
    # Audio frames and delivered replies do not re-arm the deadline timer (they only move
    # the keepalive later): once they stop, the timer must still bring the keepalives.
    got: list[str] = []

    def on_text(text: str) -> None:
        got.append(text)

    async with UpstreamSession(url=local_server.url, keepalive_interval=0.05,
                               on_text=on_text) as session:
        await session.wait_connected()
        for i in range(0, 3000, 300):  # paced like a live source, past the interval:
            await session.write_audio(AUDIO[i : i + 300])
            await asyncio.sleep(0.02)  # the timer fires while audio still flows
        record = local_server.sessions[0]
        for _ in range(200):  # at most 10 s
            if record.keepalives >= 3 and got:
                break
            await asyncio.sleep(0.05)
        session.end()
        await session.wait_finished()
    assert record.keepalives >= 3
    assert json.loads(got[-1])["finished"] is True
