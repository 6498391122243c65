"""Faults between the package and the service, for each front door: real sockets only.

A :class:`~tests.faults.FaultyRelay` sits between the client and a real local server
(or a stand-in speaking the real protocol) and drops, refuses or errors on purpose.
For each fault and front door (``UpstreamSession``/``transcribe_file``, the widget's
comm path, the standalone proxy) the outcome is checked: a continued transcript or
a clear error, how many upstream sessions were opened, the audio kept, the status,
and that no task is left over.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from websockets.asyncio.client import connect

from soniox_widget import SonioxConfig, SonioxError, Transcript, UpstreamSession
from soniox_widget.backend import choose_backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.proxy import ProxyServer
from soniox_widget.recorder import SonioxRecorder
from soniox_widget.session import NO_RECONNECT, ReconnectPolicy
from tests import standin
from tests.faults import FaultyRelay
from tests.speech import write_wav

PCM = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
MS_PER_WORD = 100
BYTES_PER_WORD = 32 * MS_PER_WORD  # s16le 16 kHz mono: 32 bytes per ms, so words align
FAST = ReconnectPolicy(base_delay=0.02, max_delay=0.1, window=10)


def pcm_audio(words: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(words * BYTES_PER_WORD))


@pytest.fixture
def pcm_engine() -> ScriptedEngine:
    return ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)


async def stream_through(session: UpstreamSession, audio: bytes, step: int = 1600,
                         pace: float = 0.002) -> tuple[Transcript, list[str]]:
    """Send audio at a steady pace while reading replies; return transcript and states."""
    transcript = Transcript()

    async def feed() -> None:
        for i in range(0, len(audio), step):
            if session.state.is_over:
                return
            session.send_audio(audio[i : i + step])
            await asyncio.sleep(pace)
        session.end()

    feeder = asyncio.create_task(feed())
    try:
        async for reply in session.replies():
            transcript.apply(reply)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    return transcript, []


def assert_continuous(transcript: Transcript) -> None:
    starts = [t.start_ms for t in transcript.final_tokens]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # The scripted engine puts word i at i*100+40 ms: one clock across connections.
    assert starts == [i * MS_PER_WORD + 40 for i in range(len(starts))]


# -- UpstreamSession / transcribe_file ---------------------------------------------------


async def test_drop_mid_stream_continues_one_exact_transcript(pcm_engine, no_task_leaks):
    audio = pcm_audio(60)
    states = []
    async with LocalSonioxServer(pcm_engine, record_audio=True) as server, \
            FaultyRelay(server.port) as relay:
        relay.drop_after(len(audio) // 2)
        async with UpstreamSession(PCM, url=relay.url(), reconnect=FAST,
                                   on_state=lambda s: states.append(s.value)) as session:
            t, _ = await stream_through(session, audio)
        assert relay.drops == 1
        assert len(server.sessions) == 2 == session.connections
        # The second session got the start message for the same format, then only the
        # audio from the last final word on: the first one's final words are not resent.
        second = server.sessions[1]
        assert second.start_message["audio_format"] == "pcm_s16le"
        assert bytes(second.audio) == audio[len(audio) - second.audio_bytes:]
        assert second.audio_bytes < len(audio) // 2 + 8 * BYTES_PER_WORD
    assert t.final_text == pcm_engine.text_for(audio)
    assert_continuous(t)
    assert "reconnecting" in states and states[-1] == "finished"
    await no_task_leaks()


async def test_503_mid_stream_restarts_and_keeps_every_word(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD,
                            fail_after_bytes=BYTES_PER_WORD * 25, fail_code=503)
    audio = pcm_audio(60)
    async with LocalSonioxServer(engine) as server:
        async with UpstreamSession(PCM, url=server.url, reconnect=FAST) as session:
            t, _ = await stream_through(session, audio)
        # 25 words per session before its 503; each resumes at the last final word.
        assert 3 <= len(server.sessions) <= 4
        assert all(s.error and s.error[0] == 503 for s in server.sessions[:-1])
    assert t.final_text == engine.text_for(audio)
    assert_continuous(t)
    await no_task_leaks()


async def test_a_stalled_connection_is_dropped_by_pings_and_resumed(pcm_engine,
                                                                    no_task_leaks):
    audio = pcm_audio(30)
    reconnecting = asyncio.Event()

    def on_state(state):
        if state.value == "reconnecting":
            reconnecting.set()

    async with LocalSonioxServer(pcm_engine) as server, FaultyRelay(server.port) as relay:
        async with UpstreamSession(PCM, url=relay.url(), reconnect=FAST, ping_interval=0.2,
                                   on_state=on_state) as session:
            session.send_audio(audio[:48000])
            await session.wait_connected()
            relay.stall()  # nothing flows either way; nothing is closed
            session.send_audio(audio[48000:64000])
            await asyncio.wait_for(reconnecting.wait(), 10)
            relay.unstall()
            t, _ = await stream_through(session, audio[64000:])
        assert session.connections == 2
    assert t.final_text == pcm_engine.text_for(audio)
    assert_continuous(t)
    await no_task_leaks()


@pytest.mark.parametrize("code", [400, 401, 402, 429])
async def test_errors_a_retry_cannot_fix_end_at_once(code, no_task_leaks):
    behaviour = standin.error_reply(code, f"no (code {code})")
    async with standin.StandIn(behaviour) as server:
        async with UpstreamSession(PCM, url=server.url, reconnect=FAST) as session:
            with pytest.raises(SonioxError) as info:
                await stream_through(session, pcm_audio(3))
        assert server.connections == 1 == session.connections
    assert info.value.error_code == code and f"code {code}" in str(info.value)
    await no_task_leaks()


@pytest.mark.parametrize("status", [401, 403, 429])
async def test_refused_handshake_is_not_retried(status, no_task_leaks):
    async with standin.StandIn(standin.refuses_handshake(status)) as server:
        async with UpstreamSession(PCM, url=server.url, reconnect=FAST) as session:
            with pytest.raises(SonioxError) as info:
                await stream_through(session, pcm_audio(3))
    assert info.value.error_code == status and session.connections == 1
    await no_task_leaks()


async def test_service_down_after_a_drop_gives_up_after_bounded_tries(pcm_engine,
                                                                     no_task_leaks):
    async with LocalSonioxServer(pcm_engine) as server, FaultyRelay(server.port) as relay:
        async with UpstreamSession(PCM, url=relay.url(), reconnect=FAST) as session:
            session.send_audio(pcm_audio(10))
            await session.wait_connected()
            relay.refuse_new(True)
            await relay.drop()
            with pytest.raises(SonioxError, match="could not reconnect") as info:
                await session.wait_finished()
        assert session.connections == 1 + FAST.max_attempts
        assert relay.connections == 1 and relay.refused == FAST.max_attempts
    assert info.value.reason == "connection_lost"
    await no_task_leaks()


async def test_garbage_from_the_server_is_a_protocol_error_not_a_reconnect(no_task_leaks):
    async with standin.StandIn(standin.answers_garbage()) as server:
        async with UpstreamSession(PCM, url=server.url, reconnect=FAST) as session:
            with pytest.raises(SonioxError) as info:
                await stream_through(session, pcm_audio(3))
    assert info.value.reason == "protocol" and session.connections == 1
    await no_task_leaks()


async def test_reconnect_off_fails_on_the_first_drop(pcm_engine, no_task_leaks):
    async with LocalSonioxServer(pcm_engine) as server, FaultyRelay(server.port) as relay:
        relay.drop_after(20_000)
        async with UpstreamSession(PCM, url=relay.url(), reconnect=NO_RECONNECT) as session:
            with pytest.raises(SonioxError, match=r"connection .* was lost") as info:
                await stream_through(session, pcm_audio(20))
    assert info.value.reason == "connection_lost" and session.connections == 1
    await no_task_leaks()


async def test_pause_holds_the_session_open_with_keepalives(pcm_engine, no_task_leaks):
    audio = pcm_audio(10)
    async with LocalSonioxServer(pcm_engine, idle_timeout=0.4) as server:
        async with UpstreamSession(PCM, url=server.url, keepalive_interval=0.1) as session:
            session.send_audio(audio[:16000])
            await session.wait_connected()
            session.pause()
            assert session.state.value == "paused"
            await asyncio.sleep(1.2)  # three idle timeouts long: only keepalives flow
            session.resume()
            t, _ = await stream_through(session, audio[16000:])
        assert len(server.sessions) == 1 and server.sessions[0].keepalives >= 5
    assert t.final_text == pcm_engine.text_for(audio)
    await no_task_leaks()


# -- the widget (comm messages) ----------------------------------------------------------


def comm(rec: SonioxRecorder, content: dict, buffers=()) -> None:
    rec._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                     "buffers": [memoryview(bytes(b)) for b in buffers]})


async def test_widget_view_that_disappears_ends_its_session(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100)
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url)
        rec.view_grace = 0.3
        comm(rec, {"type": "start", "session": "s", "view": "v"})
        audio = bytes(range(256)) * 4
        comm(rec, {"type": "chunk", "session": "s", "seq": 0}, [audio])
        # ... and then the tab is closed: no stop, no heartbeat.
        await rec.wait_until_idle(timeout=10)
        assert rec.status == "idle" and rec.error == ""
        assert rec.final_text == engine.text_for(audio)  # its words are kept
        assert server.sessions[0].finished and len(server.sessions) == 1
        # A new view can record at once.
        comm(rec, {"type": "start", "session": "s2", "view": "v2"})
        assert rec.active_view == "v2"
        rec.close()
    await no_task_leaks()


async def test_widget_heartbeats_keep_a_quiet_view_alive(no_task_leaks):
    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=100)) as server:
        rec = SonioxRecorder(url=server.url)
        rec.view_grace = 0.3
        comm(rec, {"type": "start", "session": "s", "view": "v"})
        comm(rec, {"type": "pause", "session": "s"})
        for _ in range(8):  # 0.8 s of pause, longer than the grace, with heartbeats
            await asyncio.sleep(0.1)
            comm(rec, {"type": "heartbeat", "session": "s"})
        assert rec.status == "paused" and rec.is_busy
        comm(rec, {"type": "resume", "session": "s"})
        comm(rec, {"type": "stop", "session": "s", "chunks": 0})
        await rec.wait_until_idle(timeout=10)
        assert len(server.sessions) == 1
        rec.close()
    await no_task_leaks()


async def test_widget_stop_ends_the_upstream_when_the_view_does_not_answer(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100)
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url)
        rec.stop_grace = 0.2
        sent = []
        rec.send = lambda msg, buffers=None: sent.append(msg)
        comm(rec, {"type": "start", "session": "s", "view": "v"})
        comm(rec, {"type": "chunk", "session": "s", "seq": 1}, [b"y" * 300])  # 0 is lost
        rec.stop()
        assert {"type": "stop_request"} in sent and rec.status == "finishing"
        await rec.wait_until_idle(timeout=10)
        assert rec.status == "idle" and server.sessions[0].finished
        assert server.sessions[0].audio_bytes == 300  # the held chunk went out, in order
        rec.close()
    await no_task_leaks()


async def test_widget_refusal_opens_no_new_sessions(no_task_leaks):
    """After an upstream 400, feeding more audio raises; nothing reconnects behind the
    user's back; only an explicit start opens a new session."""
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=500, fail_code=400,
                            fail_message="could not decode the audio")
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url)
        rec.feed(b"x" * 600)
        with pytest.raises(SonioxError, match="400"):
            await rec.wait_until_idle(timeout=10)
        assert rec.status == "error" and "400" in rec.error
        for _ in range(20):
            with pytest.raises(SonioxError, match=r"rec\.start\(\)"):
                rec.feed(b"more")
        assert len(server.sessions) == 1
        rec.start()
        rec.feed(b"z" * 300)
        rec.stop()
        await rec.wait_until_idle(timeout=10)
        assert len(server.sessions) == 2 and rec.status == "idle"
        rec.close()
    await no_task_leaks()


async def test_widget_file_survives_a_drop_and_shows_reconnecting(pcm_engine, tmp_path,
                                                                  no_task_leaks):
    """rec.transcribe_file through a relay that drops mid-file: one transcript."""
    audio = pcm_audio(40)
    path = tmp_path / "noise.wav"
    write_wav(path, audio, 16000)
    async with LocalSonioxServer(pcm_engine) as server, FaultyRelay(server.port) as relay:
        rec = SonioxRecorder(url=relay.url(), reconnect=FAST)
        statuses = []
        rec.observe(lambda c: statuses.append(c["new"]), names="status")
        relay.drop_after(len(audio) // 2)
        await rec.transcribe_file(path, realtime=False)
        assert "reconnecting" in statuses and statuses[-1] == "idle"
        assert rec.audio_stats["connections"] == 2 and rec.error == ""
        assert rec.last_audio == path.read_bytes()  # the audio is kept exactly as given
        # A wav is a container: after the drop the kernel decoded it and sent PCM on.
        assert server.sessions[1].start_message["audio_format"] == "pcm_s16le"
        words = rec.final_text.split()
        assert len(words) >= 38  # both halves are there (the header is not audio)
        rec.close()
    await no_task_leaks()


# -- the standalone proxy ----------------------------------------------------------------


async def test_proxy_client_keeps_its_session_across_an_upstream_drop(pcm_engine,
                                                                     no_task_leaks):
    audio = pcm_audio(40)
    async with LocalSonioxServer(pcm_engine) as server, FaultyRelay(server.port) as relay:
        backend = choose_backend(url=relay.url())
        async with ProxyServer(backend, PCM, port=0) as proxy:
            relay.drop_after(len(audio) // 2)
            t = Transcript()
            async with connect(proxy.ws_url) as ws:
                async def feed():
                    for i in range(0, len(audio), 1600):
                        await ws.send(audio[i : i + 1600])
                        await asyncio.sleep(0.002)
                    await ws.send(b"")

                feeder = asyncio.create_task(feed())
                async for message in ws:
                    data = json.loads(message)
                    assert "error_code" not in data, data
                    from soniox_widget.protocol import parse_reply

                    t.apply(parse_reply(data))
                await feeder
        assert relay.drops == 1 and len(server.sessions) == 2
    assert t.final_text == pcm_engine.text_for(audio)
    assert_continuous(t)
    await no_task_leaks()
