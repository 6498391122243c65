"""Both servers as services, in-process over real sockets: health, readiness, metrics,
drain and the per-session log line.

The balancer-level behaviour (several processes behind HAProxy, SIGKILL and SIGTERM)
is in ``test_service_haproxy.py``; here each piece is checked on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import random

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from soniox_widget import SonioxConfig, Transcript, UpstreamSession
from soniox_widget.auth import APIKey
from soniox_widget.backend import Backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.proxy import ProxyServer
from soniox_widget.service import DRAIN_MESSAGE
from soniox_widget.session import ReconnectPolicy
from tests.http_probe import http_get, metric
from tests.integration.test_reconnect import stream_through

PCM = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
BYTES_PER_WORD = 3200  # 100 ms of 16 kHz s16le mono
KEY = "sk-service-test-0123456789abcdef"
FAST = ReconnectPolicy(base_delay=0.02, max_delay=0.1, window=10)


def pcm_audio(words: int, seed: int = 3) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(words * BYTES_PER_WORD))


def scripted() -> ScriptedEngine:
    return ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=100)


async def run_session(url: str, audio: bytes, **kw) -> Transcript:
    """Stream ``audio`` at a steady pace while reading the replies."""
    async with UpstreamSession(PCM, url=url, reconnect=FAST, **kw) as session:
        transcript, _ = await stream_through(session, audio)
    return transcript


async def open_raw_session(url: str, **kw):
    """A client that sent its start message and some audio, and holds the session open."""
    ws = await connect(url, **kw)
    await ws.send(json.dumps(PCM.to_start_message()))
    await ws.send(pcm_audio(3))
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert "tokens" in first
    return ws


async def error_of(ws) -> dict:
    """Read replies until the error reply (bounded by the connection's close)."""
    async for message in ws:
        reply = json.loads(message)
        if "error_code" in reply:
            return reply
    raise AssertionError("the connection closed without an error reply")


# -- health and readiness -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "proxy"])
async def test_health_and_readiness_need_no_key_and_no_known_host(kind, no_task_leaks):
    # After the start-message cut-off the local server refuses a key-less handshake.
    async with LocalSonioxServer(scripted(), api_key=KEY,
                                 today=lambda: datetime.date(2027, 2, 1)) as local:
        server = local if kind == "local" else ProxyServer(
            Backend(local.url, None, "test", is_local=True), port=0, token="proxytoken123")
        async with server if kind == "proxy" else contextlib.nullcontext():
            # A name the Host check would refuse (421) and no key or token at all.
            assert await http_get(server.port, "/healthz", host="engine.internal:9") == (
                200, "ok\n")
            status, body = await http_get(server.port, "/readyz", host="engine.internal")
            assert status == 200 and body.startswith("ready")
            status, body = await http_get(server.port, "/metrics")
            assert status == 404 and "--metrics" in body
            # Everything else still needs the key or the token.
            with pytest.raises(InvalidStatus) as refused:
                await connect(server.url if kind == "local" else server.ws_url)
            assert refused.value.response.status_code == 401
    await no_task_leaks()


async def test_local_server_is_not_ready_at_max_sessions_and_refuses_more(no_task_leaks):
    async with LocalSonioxServer(scripted(), max_sessions=1) as server:
        ws = await open_raw_session(server.url)
        try:
            status, body = await http_get(server.port, "/readyz")
            assert status == 503 and "max-sessions" in body
            async with connect(server.url) as second:
                assert (await error_of(second))["error_code"] == 429
        finally:
            await ws.close()
        await asyncio.wait_for(server.sessions[0].done.wait(), 10)
        assert await http_get(server.port, "/readyz") == (200, "ready (0 sessions)\n")
    await no_task_leaks()


# -- metrics ---------------------------------------------------------------------------------


async def test_local_metrics_count_sessions_audio_and_latency(no_task_leaks):
    audio = pcm_audio(20)  # 2 s of PCM
    async with LocalSonioxServer(scripted(), metrics=True) as server:
        transcript = await run_session(server.url, audio)
        async with connect(server.url) as bad:  # a broken start message: a 400
            await bad.send("not json")
            assert (await error_of(bad))["error_code"] == 400
        await asyncio.wait_for(server.sessions[-1].done.wait(), 10)
        status, text = await http_get(server.port, "/metrics")
    assert status == 200
    assert transcript.final_text
    assert metric(text, 'soniox_sessions_total{reason="finished"}') == 1
    assert metric(text, 'soniox_sessions_total{reason="error"}') == 1
    assert metric(text, 'soniox_session_errors_total{code="400"}') == 1
    assert metric(text, "soniox_sessions_active") == 0
    assert metric(text, "soniox_audio_seconds_total") == pytest.approx(2.0)
    # 20 words made final in several replies: each one a latency observation.
    assert metric(text, "soniox_final_latency_seconds_count") >= 5
    assert metric(text, "soniox_engine_queue_depth") == 0
    assert metric(text, "soniox_ready") == 1
    await no_task_leaks()


async def test_proxy_metrics_count_soniox_path_sessions_and_upstream_reconnects(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=100,
                            fail_after_bytes=BYTES_PER_WORD * 25, fail_code=503)
    audio = pcm_audio(60)
    async with LocalSonioxServer(engine) as local, ProxyServer(
            Backend(local.url, None, "test", is_local=True), port=0, metrics=True) as proxy:
        # The Soniox protocol through the proxy: the client's start message is used.
        transcript = await run_session(f"ws://127.0.0.1:{proxy.port}/transcribe-websocket",
                                       audio)
        status, text = await http_get(proxy.port, "/metrics")
        assert local.sessions[0].start_message["audio_format"] == "pcm_s16le"
    assert status == 200
    assert transcript.final_text == engine.text_for(audio)
    # The local engine said 503 after every 25 words: the proxy's session resumed.
    assert metric(text, "soniox_upstream_reconnects_total") >= 2
    assert metric(text, 'soniox_sessions_total{reason="finished"}') == 1
    assert metric(text, "soniox_audio_seconds_total") == pytest.approx(6.0)
    await no_task_leaks()


# -- drain -----------------------------------------------------------------------------------


async def test_local_drain_lets_a_session_finish_then_ends_the_rest_with_a_503(
        caplog, no_task_leaks):
    caplog.set_level(logging.INFO, logger="soniox_widget.sessions")
    async with LocalSonioxServer(scripted(), log_format="json") as server:
        lingering = await open_raw_session(server.url)
        finishing = await open_raw_session(server.url)
        drain = asyncio.ensure_future(server.drain(seconds=1.0))
        await asyncio.sleep(0)  # the drain has begun
        status, body = await http_get(server.port, "/readyz")
        assert (status, body) == (503, "not ready: draining\n")
        with pytest.raises(InvalidStatus) as refused:  # no new session
            await connect(server.url)
        assert refused.value.response.status_code == 503
        await finishing.send(b"")  # this one ends its stream within the drain
        replies = [json.loads(m) async for m in finishing]
        assert replies[-1].get("finished") is True
        error = await error_of(lingering)  # this one is ended at the drain's end
        assert error == {"error_code": 503, "error_message": DRAIN_MESSAGE}
        await asyncio.wait_for(drain, 15)
        await lingering.close()
    ends = [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "soniox_widget.sessions" and "session_end" in r.getMessage()]
    assert sorted(e["reason"] for e in ends) == ["drained", "finished"]
    for end in ends:
        assert end["audio_bytes"] >= 3 * BYTES_PER_WORD and end["duration_s"] > 0
        assert len(end["id"]) == 12
    await no_task_leaks()


async def test_proxy_drain_ends_a_soniox_client_with_a_503_it_resumes_from(
        caplog, no_task_leaks):
    caplog.set_level(logging.INFO, logger="soniox_widget.sessions")
    engine = scripted()
    audio = pcm_audio(40)
    async with LocalSonioxServer(engine) as local:
        backend = Backend(local.url, None, "test", is_local=True)
        async with ProxyServer(backend, port=0, token="tok-en_1") as first, \
                ProxyServer(backend, port=0, token="tok-en_1") as second:
            ports = iter([first.port, second.port])

            class Balancer(Backend):
                """Each connection goes to the next replica, as a balancer would."""

                async def connect_url(self) -> str:
                    return f"ws://127.0.0.1:{next(ports)}/transcribe-websocket"

            transcript = Transcript()
            async with UpstreamSession(PCM, backend=Balancer("ws://x", APIKey("tok-en_1"), "pool",
                                                             is_local=False),
                                       reconnect=FAST) as session:
                session.send_audio(audio[: len(audio) // 2])
                replies = session.replies()
                while not transcript.final_text:  # words are final on the first replica
                    transcript.apply(await anext(replies))
                await first.drain(seconds=0)
                session.send_audio(audio[len(audio) // 2 :])
                session.end()
                async for reply in replies:
                    transcript.apply(reply)
            assert session.connections == 2
    assert transcript.final_text == engine.text_for(audio)
    reasons = [r.getMessage() for r in caplog.records
               if r.name == "soniox_widget.sessions" and "session_end" in r.getMessage()]
    assert any("reason=drained" in line for line in reasons)
    assert any("reason=finished" in line for line in reasons)
    assert not any("tok-en_1" in r.getMessage() for r in caplog.records)
    await no_task_leaks()


async def test_session_log_lines_never_carry_the_key(caplog, no_task_leaks):
    caplog.set_level(logging.DEBUG)
    async with LocalSonioxServer(scripted(), api_key=KEY, log_format="json") as server:
        await run_session(server.url, pcm_audio(5), api_key=KEY)
    lines = [r.getMessage() for r in caplog.records if r.name == "soniox_widget.sessions"]
    assert [json.loads(line)["event"] for line in lines] == ["session_start", "session_end"]
    assert KEY not in caplog.text
    await no_task_leaks()


async def test_each_user_has_a_key_of_their_own(tmp_path, caplog, no_task_leaks):
    """A shared engine for a hub: one key per user (--keys-file); a revoked or unknown
    key is refused, and each session's log line names its user, never the key."""
    from soniox_widget import SonioxError
    from soniox_widget.auth import KeyRing

    keys = tmp_path / "keys"
    keys.write_text("# user key\nada sk-ada-0123456789abcdef\n\n"
                    "bob sk-bob-0123456789abcdef\n")
    ring = KeyRing.from_file(keys)
    assert ring.users == ["ada", "bob"] and "sk-" not in repr(ring)
    caplog.set_level(logging.INFO, logger="soniox_widget.sessions")
    async with LocalSonioxServer(scripted(), api_key=ring, log_format="json") as server:
        for key in ("sk-ada-0123456789abcdef", "sk-bob-0123456789abcdef"):
            t = await run_session(server.url, pcm_audio(5), api_key=key)
            assert t.final_text
        with pytest.raises(SonioxError) as info:
            await run_session(server.url, pcm_audio(5), api_key="sk-eve-0123456789abcdef")
        assert info.value.error_code == 401
    ends = [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "soniox_widget.sessions" and "session_end" in r.getMessage()]
    assert [e.get("user") for e in ends] == ["ada", "bob"]
    assert "0123456789abcdef" not in caplog.text
    await no_task_leaks()


@pytest.mark.parametrize("text, problem", [
    ("ada\n", "expected 'user key'"), ("ada k1 extra\n", "expected 'user key'"),
    ("ada key-one\nada key-two\n", "listed twice"), ("# nobody\n", "lists no"),
])
def test_a_bad_keys_file_says_which_line(tmp_path, text, problem):
    from soniox_widget.auth import KeyRing

    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        KeyRing.from_file(path)
    assert "key-one" not in str(info.value) and "key-two" not in str(info.value)
