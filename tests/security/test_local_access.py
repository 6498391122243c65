"""Who may drive the local server: Host and Origin checks, and the key as Soniox takes it.

Real sockets on 127.0.0.1 and the scripted engine. The key travels in the
``Authorization: Bearer`` header, in the subprotocols ``soniox-api-key, <key>`` or,
until 15 January 2027, as ``api_key`` in the start message; a wrong key is refused in
each, and neither key ever shows up in a session record, a log record or a reply.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame

from soniox_widget.local import LocalSonioxServer
from soniox_widget.local import server as server_module

RIGHT = "sk-local-right-0123456789abcdef"
WRONG = "sk-local-wrong-fedcba9876543210"
BEFORE_CUTOFF = datetime.date(2027, 1, 14)
CUTOFF = datetime.date(2027, 1, 15)
CONFIG = {"model": "stt-rt-v5", "audio_format": "auto"}
START = json.dumps(CONFIG)
AUDIO = bytes(range(256)) * 2

# The test client holds the key, and websockets logs its own request headers at
# DEBUG; its records go to this logger, which the checks leave out. Every other
# record (the server's, websockets.server's) must be free of keys.
KEY_HOLDER = "tests.security.key_holder"


def start_with_key(key: object) -> str:
    return json.dumps({**CONFIG, "api_key": key})


async def run(url: str, frames, **options) -> tuple[list[dict], str | None]:
    """Connect, send ``frames``, read every reply until the server closes (bounded).

    Returns the replies and the subprotocol the handshake response chose.
    """
    async with connect(url, proxy=None, logger=logging.getLogger(KEY_HOLDER),
                       **options) as ws:
        for frame in frames:
            await ws.send(frame)
        replies = await asyncio.wait_for(_all(ws), 10)
        return replies, ws.response.headers.get("Sec-WebSocket-Protocol")


async def _all(ws) -> list[dict]:
    return [json.loads(m) async for m in ws]


async def refused(url: str, **options) -> tuple[int, str]:
    """The HTTP status and body of a refused handshake."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, proxy=None, open_timeout=10,
                           logger=logging.getLogger(KEY_HOLDER), **options):
            pass
    response = info.value.response
    return response.status_code, response.body.decode()


def full_session() -> list[str | bytes]:
    return [START, AUDIO, ""]


def assert_finished(replies: list[dict]) -> None:
    assert not [r for r in replies if "error_code" in r], replies
    assert replies[-1].get("finished") is True


def assert_no_key_anywhere(server: LocalSonioxServer, caplog, *texts: str) -> None:
    """Neither key in the session records, the server's log records or the given texts."""
    for record in server.sessions:
        assert "api_key" not in json.dumps(record.start_message)
        assert RIGHT not in repr(record) and WRONG not in repr(record)
    server_side = [r for r in caplog.records if r.name != KEY_HOLDER]
    for r in server_side:
        text = r.getMessage() + (caplog.handler.formatter.formatException(r.exc_info)
                                 if r.exc_info else "")
        assert RIGHT not in text and WRONG not in text, (r.name, text)
    for text in texts:
        assert RIGHT not in text and WRONG not in text, text


@pytest.fixture
def debug_logs(caplog, monkeypatch):
    """Every logger at DEBUG, set before any connection (websockets reads it then).

    Frames are logged whole, as with ``WEBSOCKETS_MAX_LOG_SIZE`` set high: elided to
    75 characters, a start message's key would only show in part.
    """
    monkeypatch.setattr(Frame, "MAX_LOG_SIZE", 100_000)
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def today(monkeypatch):
    """Set the server's idea of today (UTC); the real date never decides a test."""
    def set_today(day: datetime.date) -> None:
        monkeypatch.setattr(server_module, "utc_today", lambda: day)
    set_today(BEFORE_CUTOFF)
    return set_today


async def finished_sessions(server: LocalSonioxServer) -> None:
    for record in server.sessions:
        await asyncio.wait_for(record.done.wait(), 5)


# -- Host and Origin ------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_with_403_before_a_session(local_server,
                                                                     no_task_leaks):
    status, body = await refused(local_server.url, origin="http://evil.example")
    assert status == 403
    assert "--allow-origin" in body
    assert local_server.sessions == []
    await no_task_leaks()


async def test_an_origin_of_another_local_port_is_refused(local_server, no_task_leaks):
    """A page served by another local app (a dev server, Jupyter) is a foreign origin."""
    status, _ = await refused(local_server.url, origin="http://127.0.0.1:8888")
    assert status == 403
    assert local_server.sessions == []
    await no_task_leaks()


async def test_an_allowed_origin_gets_a_session(engine, no_task_leaks):
    async with LocalSonioxServer(engine, allowed_origins=["http://app.example"]) as server:
        replies, _ = await run(server.url, full_session(), origin="http://app.example")
        await finished_sessions(server)
        status, _ = await refused(server.url, origin="http://other.example")
    assert_finished(replies)
    assert len(server.sessions) == 1 and server.sessions[0].finished
    assert status == 403
    await no_task_leaks()


async def test_a_client_without_origin_gets_a_session(local_server, no_task_leaks):
    """Python and SDK clients send no Origin: nothing changes for them."""
    replies, subprotocol = await run(local_server.url, full_session())
    await finished_sessions(local_server)
    assert_finished(replies)
    assert subprotocol is None
    assert local_server.sessions[0].authorized_by is None
    await no_task_leaks()


async def via(url_host: str, server: LocalSonioxServer, frames=None, **options):
    """Connect to ``server`` on 127.0.0.1 while the request names ``url_host`` (as after
    DNS rebinding, or through a relay on another port); a session or a refusal."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        url = f"ws://{url_host}/transcribe-websocket"
        if frames is None:
            return await refused(url, sock=sock, **options)
        return await run(url, frames, sock=sock, **options)
    finally:
        sock.close()


@pytest.mark.parametrize("port", ["same", 1])
async def test_a_rebinding_host_name_is_refused_with_421(local_server, port, no_task_leaks):
    """DNS rebinding: the socket reaches 127.0.0.1 while the request names evil.example."""
    port = local_server.port if port == "same" else port
    status, body = await via(f"evil.example:{port}", local_server)
    assert status == 421
    assert "--allow-host" in body
    assert local_server.sessions == []
    await no_task_leaks()


@pytest.mark.parametrize("host", ["127.0.0.1:1", "localhost:1"])
async def test_a_relay_or_tunnel_on_another_port_is_answered(local_server, host,
                                                              no_task_leaks):
    """A relay, SSH tunnel or port mapping shows another port in Host: still this server."""
    replies, _ = await via(host, local_server, full_session())
    await finished_sessions(local_server)
    assert_finished(replies)
    await no_task_leaks()


async def test_a_second_host_header_is_a_400(local_server, no_task_leaks):
    status, _ = await refused(local_server.url, additional_headers={"Host": "evil.example"})
    assert status == 400 and local_server.sessions == []
    await no_task_leaks()


async def test_an_allowed_host_name_is_answered(engine, no_task_leaks):
    async with LocalSonioxServer(engine, allowed_hosts=["stt.internal"]) as server:
        replies, _ = await via(f"stt.internal:{server.port}", server, full_session())
        await finished_sessions(server)
    assert_finished(replies)
    await no_task_leaks()


def test_a_bad_allowed_origin_fails_at_construction(engine):
    with pytest.raises(ValueError, match="not an origin"):
        LocalSonioxServer(engine, allowed_origins=["app.example"])


# -- the key, three ways ----------------------------------------------------------------


async def test_the_key_in_the_bearer_header(engine, debug_logs, today, no_task_leaks):
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        replies, subprotocol = await run(
            server.url, full_session(), additional_headers={"Authorization": f"Bearer {RIGHT}"})
        await finished_sessions(server)
    assert_finished(replies)
    assert subprotocol is None
    record = server.sessions[0]
    assert record.authorized_by == "header" and record.authorized_by_header
    assert record.start_message == CONFIG
    # The server did log the handshake headers at DEBUG, with the key withheld.
    assert any(r.name == "websockets.server" and r.getMessage().startswith("< Authorization:")
               for r in debug_logs.records)
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies))
    await no_task_leaks()


async def test_the_key_in_the_subprotocols_list(engine, debug_logs, today, no_task_leaks):
    async with LocalSonioxServer(engine, api_key=RIGHT,
                                 allowed_origins=["http://app.example"]) as server:
        replies, subprotocol = await run(server.url, full_session(),
                                         subprotocols=["soniox-api-key", RIGHT],
                                         origin="http://app.example")
        await finished_sessions(server)
    assert_finished(replies)
    assert subprotocol == "soniox-api-key"  # the marker, never the key
    record = server.sessions[0]
    assert record.authorized_by == "subprotocol" and not record.authorized_by_header
    assert record.start_message == CONFIG
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies))
    await no_task_leaks()


async def test_the_key_in_the_start_message_before_the_cutoff(engine, debug_logs, today,
                                                              no_task_leaks):
    today(BEFORE_CUTOFF)
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        replies, subprotocol = await run(server.url, [start_with_key(RIGHT), AUDIO, ""])
        await finished_sessions(server)
    assert_finished(replies)
    assert subprotocol is None
    record = server.sessions[0]
    assert record.authorized_by == "start_message"
    assert record.start_message == CONFIG
    assert any("deprecated" in r.getMessage() and "15 January 2027" in r.getMessage()
               for r in debug_logs.records if r.levelno == logging.INFO)
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies))
    await no_task_leaks()


@pytest.mark.parametrize("day", [CUTOFF, datetime.date(2027, 6, 1)])
async def test_the_key_in_the_start_message_is_refused_from_the_cutoff(
        engine, debug_logs, today, day, no_task_leaks):
    today(day)
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        # After the cut-off a connection without a key cannot get one later: HTTP 401.
        status, body = await refused(server.url)
        assert status == 401 and "send it with the connection" in body
        # With the right key in the header, a start-message key is still a 400.
        replies, _ = await run(server.url, [start_with_key(RIGHT), AUDIO],
                               additional_headers={"Authorization": f"Bearer {RIGHT}"})
        await finished_sessions(server)
    assert replies == [{"error_code": 400, "error_message": replies[0]["error_message"]}]
    assert "no longer accepted" in replies[0]["error_message"]
    assert "send it with the connection" in replies[0]["error_message"]
    assert len(server.sessions) == 1 and server.sessions[0].start_message == CONFIG
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies), body)
    await no_task_leaks()


async def test_the_start_message_key_is_decided_by_the_injected_clock(engine, today):
    today(CUTOFF)  # the module's clock says after; the server's own says before
    async with LocalSonioxServer(engine, api_key=RIGHT, today=lambda: BEFORE_CUTOFF) as server:
        assert server.start_message_keys_accepted()
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        assert not server.start_message_keys_accepted()


async def test_a_server_without_a_key_ignores_a_start_message_key_until_the_cutoff(
        local_server, debug_logs, today, no_task_leaks):
    today(BEFORE_CUTOFF)
    replies, _ = await run(local_server.url, [start_with_key(WRONG), AUDIO, ""])
    await finished_sessions(local_server)
    assert_finished(replies)
    assert local_server.sessions[0].start_message == CONFIG
    assert_no_key_anywhere(local_server, debug_logs, json.dumps(replies))
    await no_task_leaks()


# -- refused keys -----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {WRONG}"},
    {"Authorization": f"Basic {WRONG}"},
    {"Authorization": "Bearer "},
])
async def test_a_wrong_key_in_the_header_is_refused_at_the_handshake(
        engine, debug_logs, today, headers, no_task_leaks):
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        status, body = await refused(server.url, additional_headers=headers)
    assert status == 401
    assert server.sessions == []
    assert_no_key_anywhere(server, debug_logs, body)
    await no_task_leaks()


@pytest.mark.parametrize("subprotocols", [
    ["soniox-api-key", WRONG],
    ["soniox-api-key"],  # the marker without a key
    [WRONG, "soniox-api-key"],  # the key must follow the marker
])
async def test_a_wrong_key_in_the_subprotocols_is_refused_at_the_handshake(
        engine, debug_logs, today, subprotocols, no_task_leaks):
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        status, body = await refused(server.url, subprotocols=subprotocols)
    assert status == 401
    assert server.sessions == []
    assert_no_key_anywhere(server, debug_logs, body)
    await no_task_leaks()


async def test_a_right_header_with_a_wrong_subprotocol_key_is_refused(engine, today,
                                                                      no_task_leaks):
    """Every key a client sends must be the right one."""
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        status, _ = await refused(server.url, subprotocols=["soniox-api-key", WRONG],
                                  additional_headers={"Authorization": f"Bearer {RIGHT}"})
    assert status == 401 and server.sessions == []
    await no_task_leaks()


async def test_a_malformed_subprotocols_header_is_a_400_that_does_not_echo_it(
        engine, debug_logs, today, no_task_leaks):
    """websockets' own parser would echo the header (key and all) in its error."""
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        status, body = await refused(
            server.url,
            additional_headers={"Sec-WebSocket-Protocol": f"soniox-api-key, {WRONG}@x y"})
    assert status == 400
    assert "Sec-WebSocket-Protocol" in body
    assert server.sessions == []
    assert_no_key_anywhere(server, debug_logs, body)
    await no_task_leaks()


@pytest.mark.parametrize("key", [WRONG, "", 12345, None, {"key": WRONG}])
async def test_a_wrong_key_in_the_start_message_gets_a_401_reply(
        engine, debug_logs, today, key, no_task_leaks):
    today(BEFORE_CUTOFF)
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        replies, _ = await run(server.url, [start_with_key(key), AUDIO])
        await finished_sessions(server)
    assert replies == [{"error_code": 401, "error_message": replies[0]["error_message"]}]
    assert "missing or invalid API key" in replies[0]["error_message"]
    record = server.sessions[0]
    assert record.error[0] == 401 and record.authorized_by is None
    assert record.audio_bytes == 0 and not record.finished
    assert record.start_message == CONFIG
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies))
    await no_task_leaks()


async def test_a_connection_without_any_key_gets_a_401_reply_after_its_start_message(
        engine, debug_logs, today, no_task_leaks):
    """Before the cut-off the key may still come in the start message, so the upgrade is
    accepted and the missing key is reported as an error reply, as Soniox does."""
    today(BEFORE_CUTOFF)
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        replies, _ = await run(server.url, [START, AUDIO])
        await finished_sessions(server)
    assert replies == [{"error_code": 401, "error_message": replies[0]["error_message"]}]
    assert "send it with the connection" in replies[0]["error_message"]
    assert server.sessions[0].audio_bytes == 0
    assert_no_key_anywhere(server, debug_logs, json.dumps(replies))
    await no_task_leaks()


async def test_a_right_header_with_a_wrong_start_message_key_gets_a_401_reply(
        engine, today, no_task_leaks):
    today(BEFORE_CUTOFF)
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        replies, _ = await run(server.url, [start_with_key(WRONG), AUDIO],
                               additional_headers={"Authorization": f"Bearer {RIGHT}"})
        await finished_sessions(server)
    assert replies[0]["error_code"] == 401
    await no_task_leaks()


async def test_the_refused_origin_check_comes_before_the_key(engine, today, no_task_leaks):
    """A foreign page holding the right key is still a foreign page."""
    async with LocalSonioxServer(engine, api_key=RIGHT) as server:
        status, _ = await refused(server.url, origin="http://evil.example",
                                  subprotocols=["soniox-api-key", RIGHT])
    assert status == 403 and server.sessions == []
    await no_task_leaks()
