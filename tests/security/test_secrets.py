"""The key is never written anywhere: logs at every level, errors, traits, replies.

Sessions run through every front door (``UpstreamSession``, ``transcribe_file``, the
widget, the proxy) against the local server requiring the key, with every logger at
DEBUG (``websockets`` logs handshake headers there); then hostile stand-ins echo the
key back in every place a server can put text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from soniox_widget import SonioxError, UpstreamSession, transcribe_file_async
from soniox_widget.backend import choose_backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.proxy import ProxyServer
from soniox_widget.recorder import SonioxRecorder
from soniox_widget.session import NO_RECONNECT
from tests import standin
from tests.speech import write_wav

SECRET = "sk-test-7f3a9c1e5b2d4f6a8c0e"
AUDIO = bytes(range(256)) * 10


@pytest.fixture
def all_debug(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "websockets.client", "websockets.server"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name in ("websockets", "websockets.client", "websockets.server"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def pieces(secret: str, n: int = 8) -> set[str]:
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def assert_clean(caplog, *texts: object, secret: str = SECRET) -> None:
    """Neither the key nor any 8-character piece of it anywhere (issue 22: a long frame
    logged as its head and tail showed 49 of a 64-character key's characters)."""
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    bits = pieces(secret)
    for record in caplog.records:
        message = record.getMessage()
        assert not [b for b in bits if b in message], (record.name, message)
    assert not [b for b in bits if b in caplog.text]
    for text in texts:
        for shown in (str(text), repr(text)):
            assert not [b for b in bits if b in shown], shown


@pytest.fixture
async def keyed_server():
    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=100), api_key=SECRET) as srv:
        yield srv


async def test_debug_logs_of_a_session_never_show_the_key(keyed_server, all_debug):
    async with UpstreamSession(url=keyed_server.url, api_key=SECRET) as session:
        session.send_audio(AUDIO)
        session.end()
        replies = [r async for r in session.replies()]
    assert replies and keyed_server.sessions[0].authorized_by_header
    # The handshake headers were logged, masked.
    assert any("Authorization" in r.getMessage() for r in all_debug.records)
    assert_clean(all_debug, session)


async def test_transcribe_file_and_widget_logs_never_show_the_key(keyed_server, all_debug,
                                                                  tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, AUDIO, 16000)
    t = await transcribe_file_async(path, url=keyed_server.url, api_key=SECRET)
    rec = SonioxRecorder(url=keyed_server.url, api_key=SECRET)
    rec.feed(AUDIO)
    rec.stop()
    await rec.wait_until_idle(timeout=10)
    state = json.dumps(rec.get_state(), default=str)
    rec.close()
    assert t.final_text and rec.final_text
    assert_clean(all_debug, state, rec)


async def through_the_proxy(upstream_url: str) -> list[str | bytes]:
    """One client's stream (an audio frame, then the end) through a proxy on the test key
    in front of ``upstream_url``; every message the client got."""
    backend = choose_backend(url=upstream_url, api_key=SECRET)
    async with ProxyServer(backend, port=0) as proxy, connect(proxy.ws_url) as ws:
        await ws.send(AUDIO)
        await ws.send(b"")
        return [m async for m in ws]


def echoes_the_key(reply: Callable[[str], str]) -> standin.Behaviour:
    """A hostile server: each audio frame is answered with ``reply(key)``, the key its
    client authenticated with; the empty frame with ``finished``."""
    async def run(ws: ServerConnection) -> None:
        key = ws.request.headers.get("Authorization", "").split()[-1]
        await standin.read_start(ws)
        async for msg in ws:
            if msg in ("", b""):
                await ws.send(json.dumps({"tokens": [], "finished": True}))
                await ws.close()
                return
            await ws.send(reply(key))
    return run


async def test_proxy_logs_never_show_the_key(keyed_server, all_debug):
    replies = [json.loads(m) for m in await through_the_proxy(keyed_server.url)]
    assert replies[-1].get("finished")
    assert_clean(all_debug, replies)


# -- hostile servers ---------------------------------------------------------------


async def session_failure(url: str, key: str) -> SonioxError:
    """One session with ``key`` against ``url`` that must fail: the failure."""
    async with UpstreamSession(url=url, api_key=key, reconnect=NO_RECONNECT) as session:
        session.send_audio(AUDIO)
        session.end()
        with pytest.raises(SonioxError) as info:
            async for _ in session.replies():
                pass
    return info.value


def echoes_key_in_error():
    async def run(ws: ServerConnection) -> None:
        auth = ws.request.headers.get("Authorization", "")
        await standin.read_start(ws)
        await ws.send(json.dumps({"error_code": 400, "error_message": f"bad key {auth}"}))
        await ws.close()
    return run


def echoes_key_in_a_token():
    async def run(ws: ServerConnection) -> None:
        key = ws.request.headers.get("Authorization", "").split()[-1]
        await standin.read_start(ws)
        await ws.send(json.dumps({"tokens": [{"text": "x", "is_final": True,
                                              "start_ms": key}]}))
        async for _ in ws:
            pass
    return run


def echoes_key_in_the_close_reason():
    async def run(ws: ServerConnection) -> None:
        key = ws.request.headers.get("Authorization", "").split()[-1]
        await standin.read_start(ws)
        await ws.close(4000, f"bye {key}")
    return run


def echoes_key_in_a_refused_handshake():
    def refuse(connection: ServerConnection, request) -> Response:
        auth = request.headers.get("Authorization", "")
        return connection.respond(403, f"forbidden for {auth}\n")

    async def run(ws: ServerConnection) -> None:
        raise AssertionError("never runs")

    run.process_request = refuse  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("behaviour", [echoes_key_in_error, echoes_key_in_a_token,
                                       echoes_key_in_the_close_reason,
                                       echoes_key_in_a_refused_handshake])
async def test_a_server_echoing_the_key_never_gets_it_shown(behaviour, all_debug):
    async with standin.StandIn(behaviour()) as server:
        # Straight through the session ...
        err = await session_failure(server.url, SECRET)
        # ... through the widget (its error trait is saved with the notebook) ...
        rec = SonioxRecorder(url=server.url, api_key=SECRET, reconnect=NO_RECONNECT)
        rec.feed(AUDIO)
        rec.stop()
        with pytest.raises(SonioxError):
            await rec.wait_until_idle(timeout=10)
        assert rec.status == "error" and rec.error
        state = json.dumps(rec.get_state(), default=str)
        rec.close()
        # ... and through the proxy, whose error reply goes to a browser.
        replies = await through_the_proxy(server.url)
    assert_clean(all_debug, err, err.error_message, err.to_json(), state, rec.error,
                 replies)


async def test_the_proxy_masks_a_key_echoed_in_a_reply_it_relays_as_it_came(all_debug):
    # Replies go to the browser as the server's own text: an echoed key must not ride
    # along in a word, while the rest of the reply and the session go on unchanged.
    run = echoes_the_key(lambda key: json.dumps({"tokens": [
        {"text": " ok", "is_final": True, "end_ms": 10},
        {"text": f" {key}", "is_final": False}]}))
    async with standin.StandIn(run) as server:
        replies = await through_the_proxy(server.url)
    assert json.loads(replies[0])["tokens"] == [
        {"text": " ok", "is_final": True, "end_ms": 10},
        {"text": " ***", "is_final": False}]
    assert json.loads(replies[-1]) == {"tokens": [], "finished": True}
    assert_clean(all_debug, replies)


@pytest.mark.parametrize("final", [False, True])
async def test_the_proxy_masks_a_key_hidden_behind_json_escapes(final, all_debug):
    # "\u0073k-..." is the same string to the browser's JSON.parse as "sk-...": masking
    # the relayed text as it came would miss it, so such a reply is read and re-encoded.
    def reply(key: str) -> str:
        hidden = "".join(f"\\u{ord(c):04x}" for c in key)
        flag = "true" if final else "false"
        return '{"tokens":[{"text":" ' + hidden + '","is_final":' + flag + ',"end_ms":10}]}'

    async with standin.StandIn(echoes_the_key(reply)) as server:
        replies = await through_the_proxy(server.url)
    decoded = [json.loads(r) for r in replies]
    assert decoded[0]["tokens"][0]["text"] == " ***"
    assert decoded[0]["tokens"][0]["is_final"] is final
    assert all(SECRET not in json.dumps(d, ensure_ascii=False) for d in decoded)
    assert_clean(all_debug, replies)


LONG_SECRET = "sk-live-" + "".join(f"{(i * 37 + 11) % 256:02x}" for i in range(28))


@pytest.mark.parametrize("where", ["error", "close reason", "token"])
async def test_no_piece_of_a_long_key_echoed_by_a_server_reaches_a_log(where, all_debug):
    """websockets logs a long frame shortened to its head and tail; before issue 22 the
    redaction masked only the whole key, so most of a 64-character key showed."""
    async def run(ws: ServerConnection) -> None:
        key = ws.request.headers.get("Authorization", "").split()[-1]
        await standin.read_start(ws)
        if where == "error":
            await ws.send(json.dumps({"error_code": 400, "error_message": f"bad {key}"}))
        elif where == "token":
            await ws.send(json.dumps({"tokens": [{"text": f" {key}", "is_final": False}]}))
            await ws.send(json.dumps({"error_code": 400, "error_message": "no"}))
        await ws.close(4000, f"k {key[:50]}" if where == "close reason" else "")

    assert len(LONG_SECRET) == 64
    async with standin.StandIn(run) as server:
        err = await session_failure(server.url, LONG_SECRET)
    frames = [r.getMessage() for r in all_debug.records if r.name.startswith("websockets")
              and ("TEXT" in r.getMessage() or "CLOSE" in r.getMessage())]
    assert frames, "websockets logged no frame: the scan would prove nothing"
    assert_clean(all_debug, err, err.error_message, secret=LONG_SECRET)


def test_pieces_are_masked_where_they_stand_and_nothing_else_is():
    from soniox_widget.redaction import redact, register_secret

    register_secret(LONG_SECRET)
    head, tail = LONG_SECRET[:28], LONG_SECRET[-21:]
    shown = redact(f"error: 'bad {head}...{tail}' [90 bytes] and a {LONG_SECRET[30:37]}")
    assert shown == f"error: 'bad ***...***' [90 bytes] and a {LONG_SECRET[30:37]}"
    assert redact("nothing secret here, at all") == "nothing secret here, at all"
