"""A client speaking the original "proxy stream" protocol ⇄ ProxyServer ⇄ local server."""

import asyncio
import hashlib
import json
import logging
import socket
import subprocess
import sys
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from soniox_widget.backend import Backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.proxy import ProxyServer
from tests import standin

AUDIO = bytes(range(256)) * 40


def backend_for(url: str) -> Backend:
    return Backend(url, None, "test server", is_local=True)


@pytest.fixture
async def proxy(local_server):
    async with ProxyServer(backend_for(local_server.url), port=0) as server:
        yield server


async def talk(ws_url: str, frames, **kw) -> list[dict]:
    replies = []
    async with connect(ws_url, **kw) as ws:
        for f in frames:
            await ws.send(f)
        async for message in ws:
            replies.append(json.loads(message))
    return replies


async def test_every_byte_arrives_in_order_and_text_comes_back(proxy, local_server, engine,
                                                             no_task_leaks):
    chunks = [AUDIO[i : i + 700] for i in range(0, len(AUDIO), 700)]
    replies = await talk(proxy.ws_url, [*chunks, ""])
    record = local_server.sessions[0]
    assert record.audio_bytes == len(AUDIO)
    assert record.audio_sha256 == hashlib.sha256(AUDIO).hexdigest()
    final = "".join(t["text"] for r in replies for t in r.get("tokens", []) if t["is_final"])
    assert final == engine.text_for(AUDIO)
    assert replies[-1].get("finished") is True
    await no_task_leaks()


async def test_original_client_path_slash_also_works(proxy, local_server):
    replies = await talk(f"ws://127.0.0.1:{proxy.port}/", [AUDIO[:300], ""])
    assert replies[-1]["finished"]


async def test_the_page_is_served(proxy):
    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    status, ctype, body = await asyncio.to_thread(get, "/")
    assert status == 200 and ctype.startswith("text/html") and "<button" in body
    with pytest.raises(urllib.error.HTTPError):
        await asyncio.to_thread(get, "/../../etc/passwd")


async def test_non_binary_frame_gets_a_json_error(proxy, local_server, no_task_leaks):
    replies = await talk(proxy.ws_url, [AUDIO[:300], "hello"])
    assert "binary" in replies[-1]["error_message"]
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert local_server.sessions[0].client_went_away  # upstream was closed, not left open
    await no_task_leaks()


@pytest.mark.parametrize(("frame", "words"), [
    ('{"type": "finalize", "trailing_silence_ms": -5}', "non-negative integer"),
    ('{"type": "stop"}', "unknown control message type 'stop'"),
    ("{not json", "not valid JSON"),
    ("[" * 200_000, "text message"),
    ('{"type": ' * 100 + "1" + "}" * 100, "nested too deeply"),
])
async def test_bad_control_frame_gets_a_400_and_a_clean_close(proxy, local_server, frame,
                                                               words, caplog, no_task_leaks):
    async with connect(proxy.ws_url) as ws:
        await ws.send(AUDIO[:300])
        await ws.send(frame)
        replies = [json.loads(m) async for m in ws]  # ends when the proxy closes
        assert ws.close_code == 1000
    assert replies[-1]["error_code"] == 400
    assert words in replies[-1]["error_message"]
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert local_server.sessions[0].client_went_away  # upstream was closed, not left open
    assert local_server.sessions[0].finalize_requests == 0
    # Nothing escaped the handler (websockets logs "connection handler failed").
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await no_task_leaks()


async def test_idle_client_gets_a_408_and_its_upstream_session_is_closed(local_server,
                                                                         no_task_leaks):
    async with ProxyServer(backend_for(local_server.url), port=0,
                           idle_timeout=0.3) as proxy:
        async with connect(proxy.ws_url) as ws:
            await ws.send(AUDIO[:300])
            # Then silence: the only way this loop ends is the proxy closing the connection.
            replies = await asyncio.wait_for(_all_replies(ws), 10)
    assert replies[-1] == {
        "error_code": 408,
        "error_message": "no audio or keepalive from the client for 0.3 s; "
                         "the session was closed",
    }
    assert len(local_server.sessions) == 1
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert local_server.sessions[0].client_went_away
    await no_task_leaks()


async def test_client_that_sends_only_keepalives_is_not_closed(local_server, engine,
                                                              no_task_leaks):
    async with ProxyServer(backend_for(local_server.url), port=0,
                           idle_timeout=0.5) as proxy:
        async with connect(proxy.ws_url) as ws:
            await ws.send(AUDIO[:300])
            for _ in range(12):  # 1.2 s of keepalives: well past the idle timeout
                await ws.send('{"type": "keepalive"}')
                await asyncio.sleep(0.1)
            await ws.send(AUDIO[300:600])
            await ws.send("")
            replies = await asyncio.wait_for(_all_replies(ws), 10)
    assert not any("error_code" in r for r in replies), replies
    assert replies[-1]["finished"] is True
    final = "".join(t["text"] for r in replies for t in r.get("tokens", []) if t["is_final"])
    assert final == engine.text_for(AUDIO[:600])
    assert local_server.sessions[0].audio_bytes == 600
    await no_task_leaks()


def test_idle_timeout_is_a_cli_option():
    from soniox_widget.proxy.__main__ import parse_args

    assert parse_args([]).idle_timeout == 30.0
    assert parse_args(["--idle-timeout", "2.5"]).idle_timeout == 2.5
    with pytest.raises(SystemExit):
        parse_args(["--idle-timeout", "-1"])


async def _all_replies(ws) -> list[dict]:
    return [json.loads(m) async for m in ws]


async def test_oversize_frame_gets_a_json_error(local_server, no_task_leaks):
    async with ProxyServer(backend_for(local_server.url), port=0,
                           max_frame_bytes=1000) as proxy:
        replies = await talk(proxy.ws_url, [b"x" * 1500])
    assert "over the 1000-byte limit" in replies[-1]["error_message"]
    await no_task_leaks()


async def test_finalize_control_message_is_forwarded(proxy, local_server):
    replies = await talk(proxy.ws_url, [AUDIO[:250], '{"type": "finalize"}', ""])
    texts = [t["text"] for r in replies for t in r.get("tokens", [])]
    assert "<fin>" in texts
    assert local_server.sessions[0].finalize_requests == 1


async def test_client_disconnect_mid_stream_closes_upstream(proxy, local_server,
                                                            no_task_leaks):
    async with connect(proxy.ws_url) as ws:
        await ws.send(AUDIO[:500])
        await ws.recv()
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    assert local_server.sessions[0].client_went_away
    await no_task_leaks()


async def test_unreachable_upstream_reports_error_message(no_task_leaks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = backend_for(f"ws://127.0.0.1:{port}/transcribe-websocket")
    async with ProxyServer(dead, port=0) as proxy:
        replies = await talk(proxy.ws_url, [AUDIO[:100], ""])
    assert "cannot connect" in replies[-1]["error_message"]
    await no_task_leaks()


async def test_upstream_error_is_relayed(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=500)
    async with LocalSonioxServer(engine) as upstream, \
            ProxyServer(backend_for(upstream.url), port=0) as proxy:
        replies = await talk(proxy.ws_url, [AUDIO[:400], AUDIO[400:800], ""])
    assert replies[-1]["error_code"] == 503
    await no_task_leaks()


async def test_foreign_origin_is_refused_same_origin_allowed(proxy):
    with pytest.raises(InvalidStatus) as info:
        await talk(proxy.ws_url, [""], origin="http://evil.example")
    assert info.value.response.status_code == 403
    own = f"http://127.0.0.1:{proxy.port}"
    replies = await talk(proxy.ws_url, [AUDIO[:200], ""], origin=own)
    assert replies[-1]["finished"]


async def test_allow_listed_origin(local_server):
    async with ProxyServer(backend_for(local_server.url), port=0,
                           allowed_origins=["http://app.example"]) as proxy:
        replies = await talk(proxy.ws_url, [""], origin="http://app.example")
    assert replies[-1]["finished"]


def test_cli_refuses_to_start_without_a_key_or_engine(tmp_path):
    """With no key, the proxy needs the local engine; asked for Soniox, it says how to set a key."""
    result = subprocess.run(
        [sys.executable, "-m", "soniox_widget.proxy", "--engine", "soniox", "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "SONIOX_API_KEY" in result.stderr


@pytest.mark.engine
def test_cli_serves_the_page_on_the_offline_engine_and_stops_on_sigint(tmp_path):
    import re
    import signal

    from soniox_widget.local import local_engine_available

    if not local_engine_available():
        pytest.skip("needs soniox-widget[local]")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "soniox_widget.proxy", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)
    try:
        line = proc.stdout.readline()  # the banner; the process exits if it cannot start
        match = re.search(r"\((.+)\) serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        assert match.group(1) == "local engine (offline)"
        with urllib.request.urlopen(match.group(2), timeout=10) as page:
            assert page.status == 200 and b'id="trigger"' in page.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# -- the relay fast path: the server's own frames, uncompressed legs -----------------------

ODD_REPLY = ('{ "tokens" : [ {"text": " hé", "is_final": true, "end_ms": 90, "x": [1, 2]},'
             ' {"text": " …", "is_final": false} ], "vendor": {"nested": {"k": null}} }')


def answers_each_frame_with(text: str):
    """A stand-in that answers every audio frame with ``text``, and the end with finished."""
    async def run(ws) -> None:
        await standin.read_start(ws)
        async for msg in ws:
            if msg in ("", b""):
                await ws.send('{"tokens": [], "finished": true}')
                await ws.close()
                return
            if isinstance(msg, bytes):
                await ws.send(text)
    return run


async def test_replies_reach_the_client_exactly_as_the_server_sent_them(no_task_leaks):
    async with standin.StandIn(answers_each_frame_with(ODD_REPLY)) as server, \
            ProxyServer(backend_for(server.url), port=0) as proxy:
        async with connect(proxy.ws_url) as ws:
            for i in range(3):
                await ws.send(AUDIO[i * 100:(i + 1) * 100])
            await ws.send("")
            messages = [m async for m in ws]
    assert messages == [ODD_REPLY] * 3 + ['{"tokens": [], "finished": true}']
    await no_task_leaks()


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_permessage_deflate_is_used_on_both_legs_only_when_asked(compression,
                                                                        no_task_leaks):
    upstream_extensions = []

    async def run(ws) -> None:
        upstream_extensions.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        await answers_each_frame_with('{"tokens": []}')(ws)

    async with standin.StandIn(run) as server, \
            ProxyServer(backend_for(server.url), port=0, compression=compression) as proxy:
        async with connect(proxy.ws_url) as ws:  # offers deflate, as browsers do
            client_extension = ws.response.headers.get("Sec-WebSocket-Extensions")
            await ws.send(AUDIO[:100])
            await ws.send("")
            replies = [json.loads(m) async for m in ws]
    assert replies[-1]["finished"] is True
    if compression is None:
        assert client_extension is None and upstream_extensions == [None]
    else:
        assert "permessage-deflate" in client_extension
        assert "permessage-deflate" in upstream_extensions[0]
    await no_task_leaks()


def test_compression_and_event_loop_are_cli_options():
    from soniox_widget.proxy.__main__ import parse_args

    assert parse_args([]).compression == "none" and parse_args([]).loop == "auto"
    args = parse_args(["--compression", "deflate", "--loop", "asyncio", "--engine", "soniox"])
    assert (args.compression, args.loop) == ("deflate", "asyncio")
    with pytest.raises(SystemExit):
        parse_args(["--compression", "gzip"])
    with pytest.raises(ValueError):
        ProxyServer(backend_for("ws://127.0.0.1:9/x"), compression="gzip")


def test_run_main_runs_on_the_chosen_event_loop():
    from soniox_widget._serving import run_main

    seen = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_main(main(), "asyncio")
    assert seen == ["asyncio.unix_events"]
    pytest.importorskip("uvloop")
    run_main(main(), "uvloop")
    run_main(main(), "auto")  # installed: auto takes it
    assert seen[1:] == ["uvloop", "uvloop"]
    coro = main()
    with pytest.raises(ValueError, match="unknown event loop"):
        run_main(coro, "trio")
    coro.close()
