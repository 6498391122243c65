"""Which service is used: Soniox with a key, the offline engine without, or a given URL."""

import pytest

from soniox_widget import MissingAPIKeyError
from soniox_widget.backend import LOCAL_LABEL, choose_backend
from soniox_widget.errors import ConfigError
from soniox_widget.local import shared


def test_a_key_means_soniox(monkeypatch):
    monkeypatch.setenv("SONIOX_API_KEY", "k-123")
    b = choose_backend(model="stt-rt-v5")
    assert b.url.startswith("wss://stt-rt.soniox.com") and not b.is_local
    assert b.label == "Soniox stt-rt-v5" and b.paces_realtime
    assert "k-123" not in repr(b)


def test_an_explicit_url_needs_no_key():
    b = choose_backend(url="ws://127.0.0.1:9/transcribe-websocket")
    assert b.api_key is None and b.label == "server at 127.0.0.1:9"
    assert not b.paces_realtime  # only Soniox wants a file at real-time pace


def test_without_key_or_engine_the_message_names_both_fixes(monkeypatch):
    monkeypatch.setattr(shared, "local_engine_available", lambda: False)
    with pytest.raises(MissingAPIKeyError) as info:
        choose_backend()
    assert "SONIOX_API_KEY" in str(info.value) and "soniox-widget[local]" in str(info.value)
    with pytest.raises(shared.LocalEngineUnavailable, match=r"soniox-widget\[local\]"):
        shared.default_engine()


def test_soniox_without_a_key_says_where_to_put_one():
    with pytest.raises(MissingAPIKeyError, match=r"\.env"):
        choose_backend("soniox")
    with pytest.raises(ConfigError, match="'auto', 'soniox' or 'local'"):
        choose_backend("whisper")


@pytest.mark.engine
@pytest.mark.skipif(not shared.local_engine_available(), reason="needs soniox-widget[local]")
def test_without_a_key_the_offline_engine_is_used_and_shared():
    first = choose_backend()
    assert first.is_local and first.label == LOCAL_LABEL and first.url.startswith("ws://127.")
    assert choose_backend("local").url == first.url  # one server per process


def test_a_key_over_plain_ws_to_another_machine_is_warned_about(caplog):
    choose_backend(url="ws://10.1.2.3:9/transcribe-websocket", api_key="k-123")
    assert "without TLS" in caplog.text
    caplog.clear()
    for host in ("127.0.0.1", "localhost", "[::1]"):
        choose_backend(url=f"ws://{host}:9/transcribe-websocket", api_key="k-123")
    assert "without TLS" not in caplog.text


async def test_a_backend_given_its_key_as_text_connects_or_fails_never_hangs():
    """Found while testing the services: a Backend built with a str key made the
    session's connection task crash and the session wait forever."""
    import asyncio

    from soniox_widget import UpstreamSession
    from soniox_widget.auth import APIKey
    from soniox_widget.backend import Backend
    from soniox_widget.local import LocalSonioxServer, ScriptedEngine

    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=100),
                                 api_key="k-123456789") as server:
        backend = Backend(fixed_url=server.url, api_key="k-123456789",  # type: ignore[arg-type]
                          label="test", is_local=False)
        assert isinstance(backend.api_key, APIKey)
        async with UpstreamSession(backend=backend) as session:
            session.send_audio(bytes(range(256)) * 4)
            session.end()
            replies = await asyncio.wait_for(_all(session), 10)
    assert replies[-1].finished


async def _all(session):
    return [r async for r in session.replies()]


async def test_local_server_keeps_only_the_latest_session_records():
    from soniox_widget import UpstreamSession
    from soniox_widget.local import LocalSonioxServer, ScriptedEngine

    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=100), record_audio=True,
                                 keep_sessions=3) as server:
        for i in range(5):
            async with UpstreamSession(url=server.url) as session:
                session.send_audio(bytes([i]) * 300)
                session.end()
                await _all(session)
        # The two oldest were let go; the latest three are there, in order.
        assert [bytes(s.audio)[:1] for s in server.sessions] == [b"\x02", b"\x03", b"\x04"]
