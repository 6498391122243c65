"""Who may spend the owner's key through the standalone proxy.

Real sockets on 127.0.0.1. Raw HTTP requests forge ``Host`` and ``Origin`` the way a
page on a DNS-rebinding domain sends them; WebSocket clients connect to 127.0.0.1
while their handshake names another host. The upstream is the scripted local server,
whose ``sessions`` list shows whether a refused client still opened a session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from soniox_widget.backend import choose_backend
from soniox_widget.proxy import ProxyServer
from soniox_widget.proxy.__main__ import build, parse_args

AUDIO = bytes(range(256)) * 4
TOKEN = "proxy-token-4b1d9e7c2a5f8e3d6c0b"


@pytest.fixture
def backend(local_server):
    return choose_backend(url=local_server.url)


@pytest.fixture
async def proxy(backend):
    async with ProxyServer(backend, port=0) as server:
        yield server


@pytest.fixture
async def tokened(backend):
    async with ProxyServer(backend, port=0, token=TOKEN) as server:
        yield server


async def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], str]:
    """One raw GET to 127.0.0.1:port, with exactly the headers given (Host included)."""
    headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
                 "Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode())
        raw = await asyncio.wait_for(reader.read(), 10)  # the server closes after answering
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    return (int(status_line.split()[1]),
            {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)},
            body)


def ws_connect(proxy: ProxyServer, host: str | None = None, query: str = "", **kw):
    """A WebSocket client of the proxy whose handshake says ``Host: host`` (default the
    proxy's own), connected to 127.0.0.1 whatever the name: rebinding, as seen by us."""
    host = host or f"127.0.0.1:{proxy.port}"
    return connect(f"ws://{host}/ws{query}", host="127.0.0.1", port=proxy.port, proxy=None,
                   open_timeout=10, **kw)


async def one_session(proxy: ProxyServer, host: str | None = None, query: str = "",
                      **kw) -> list[dict]:
    async with ws_connect(proxy, host, query, **kw) as ws:
        await ws.send(AUDIO)
        await ws.send("")
        return await asyncio.wait_for(_all(ws), 10)


async def _all(ws) -> list[dict]:
    return [json.loads(m) async for m in ws]


async def refused_status(proxy: ProxyServer, host: str | None = None, query: str = "",
                         **kw) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(proxy, host, query, **kw):
            pass
    return info.value.response.status_code


# -- Host: DNS rebinding ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/app.js", "/no-such-file"])
async def test_rebinding_host_gets_421_for_the_page_and_the_websocket(proxy, local_server,
                                                                      path):
    evil = f"evil.example:{proxy.port}"
    status, _, body = await http_get(proxy.port, path,
                                     {"Host": evil, "Origin": f"http://{evil}"})
    assert status == 421
    assert "Host" in body and "<button" not in body
    assert await refused_status(proxy, evil, origin=f"http://{evil}") == 421
    assert await refused_status(proxy, evil) == 421  # no Origin: still not our name
    assert local_server.sessions == []
    assert proxy.sessions_started == 0


@pytest.mark.parametrize("host", ["127.0.0.1:{port}#@evil.example", "127.0.0.1:{port}?x",
                                  "127.0.0.1:{port}/x", "user@127.0.0.1:{port}",
                                  "127.0.0.1:{port}\\evil.example", "127.0.0.1:99999"])
async def test_a_host_with_characters_a_host_cannot_hold_gets_421(proxy, local_server, host):
    """Issue 22: a URL parser cuts at "#" or "?" and saw 127.0.0.1 in these; a Host
    header holds a name or address and a port, nothing else."""
    status, _, _ = await http_get(proxy.port, "/", {"Host": host.format(port=proxy.port)})
    assert status == 421
    assert local_server.sessions == []


async def test_foreign_origin_with_a_good_host_gets_403(proxy, local_server):
    status, _, _ = await http_get(proxy.port, "/", {"Origin": "http://evil.example"})
    assert status == 403
    assert await refused_status(proxy, origin="http://evil.example") == 403
    # A page of another local server (another port) is another origin, too.
    assert await refused_status(proxy, origin=f"http://127.0.0.1:{proxy.port + 1}") == 403
    assert local_server.sessions == []


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_names_with_their_own_origin_work(proxy, local_server, name):
    host = f"{name}:{proxy.port}"
    status, headers, body = await http_get(proxy.port, "/",
                                           {"Host": host, "Origin": f"http://{host}"})
    assert status == 200 and 'id="trigger"' in body
    assert "set-cookie" not in headers  # no token on loopback, nothing to remember
    replies = await one_session(proxy, host, origin=f"http://{host}")
    assert replies[-1]["finished"] is True
    assert len(local_server.sessions) == 1


async def test_an_allowed_host_name_gets_through_and_others_do_not(backend, local_server):
    async with ProxyServer(backend, port=0, allowed_hosts=["proxy.example"]) as proxy:
        host = f"proxy.example:{proxy.port}"
        status, _, _ = await http_get(proxy.port, "/", {"Host": host,
                                                        "Origin": f"http://{host}"})
        assert status == 200
        replies = await one_session(proxy, host, origin=f"https://{host}")
        assert replies[-1]["finished"] is True
        other = f"other.example:{proxy.port}"
        assert await refused_status(proxy, other, origin=f"http://{other}") == 421
    assert len(local_server.sessions) == 1


async def test_a_request_with_two_host_headers_is_refused(proxy):
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nHost: evil.example\r\n"
                 "Connection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 400 ")


# -- the access token ----------------------------------------------------------------------


@pytest.mark.parametrize(("query", "headers"), [
    ("", {}),
    ("?token=wrong", {}),
    (f"?token={TOKEN}x", {}),
    ("", {"Authorization": "Token wrong"}),
    ("", {"Authorization": f"Bearer {TOKEN}"}),  # the scheme is Token
    ("", {"Cookie": "soniox_proxy_token_{port}=wrong"}),
    ("", {"Cookie": f"soniox_proxy_token_1={TOKEN}"}),  # another proxy's cookie
])
async def test_missing_or_wrong_token_gets_401_for_page_and_websocket(tokened, local_server,
                                                                      query, headers):
    headers = {k: v.replace("{port}", str(tokened.port)) for k, v in headers.items()}
    status, response_headers, body = await http_get(tokened.port, "/" + query, headers)
    assert status == 401
    assert "printed when it started" in body
    assert "set-cookie" not in response_headers
    assert await refused_status(tokened, query=query, additional_headers=headers) == 401
    assert local_server.sessions == []


async def test_right_token_in_the_query_serves_the_page_and_sets_its_cookie(tokened):
    status, headers, body = await http_get(tokened.port, f"/?token={TOKEN}")
    assert status == 200 and 'id="trigger"' in body
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"soniox_proxy_token_{tokened.port}={TOKEN};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    assert headers["referrer-policy"] == "no-referrer"
    # The page's own files then load with the cookie alone, as the browser sends it.
    name_value = cookie.split(";", 1)[0]
    for path in ("/app.js", "/style.css", "/"):
        status, headers, _ = await http_get(tokened.port, path, {"Cookie": name_value})
        assert status == 200, path
        assert "set-cookie" not in headers  # already set


@pytest.mark.parametrize("carrier", ["query", "header", "cookie"])
async def test_right_token_opens_a_session_by_query_header_or_cookie(tokened, local_server,
                                                                     carrier):
    own = f"http://127.0.0.1:{tokened.port}"
    kw: dict = {"origin": own}
    if carrier == "query":
        kw["query"] = f"?token={TOKEN}"
    elif carrier == "header":
        kw["additional_headers"] = {"Authorization": f"Token {TOKEN}"}
    else:
        kw["additional_headers"] = {"Cookie": f"soniox_proxy_token_{tokened.port}={TOKEN}"}
    replies = await one_session(tokened, **kw)
    assert replies[-1]["finished"] is True
    assert len(local_server.sessions) == 1


async def test_the_token_is_never_logged(tokened, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "websockets.server", "websockets.client"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        await http_get(tokened.port, f"/?token={TOKEN}")
        await http_get(tokened.port, "/", {"Cookie": f"soniox_proxy_token_{tokened.port}="
                                                     f"{TOKEN}"})
        await one_session(tokened, additional_headers={"Authorization": f"Token {TOKEN}"})
        await one_session(tokened, query=f"?token={TOKEN}")
        await http_get(tokened.port, "/")  # refused: says a token is needed
    finally:
        for name in ("websockets", "websockets.server", "websockets.client"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert any("token" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


def test_a_bind_beyond_loopback_without_a_token_raises(backend, caplog):
    with pytest.raises(ValueError, match="access token"):
        ProxyServer(backend, host="0.0.0.0")
    with pytest.raises(ValueError, match="access token"):
        ProxyServer(backend, host="192.168.1.20")
    ProxyServer(backend, host="0.0.0.0", token=TOKEN)  # fine
    assert not caplog.records
    ProxyServer(backend, host="0.0.0.0", require_token=False)  # behind a gateway: warned
    assert "without an access token" in caplog.text


def test_a_token_that_cannot_travel_in_a_url_is_refused_without_being_echoed(backend):
    with pytest.raises(ValueError, match="only letters") as info:
        ProxyServer(backend, token="hunter2; Path=/x")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError):
        ProxyServer(backend, token="")


def test_cli_token_options(monkeypatch):
    monkeypatch.setenv("SONIOX_WS_URL", "ws://127.0.0.1:9/transcribe-websocket")
    monkeypatch.delenv("SONIOX_PROXY_TOKEN", raising=False)
    loopback = build(parse_args(["--port", "0"]))
    assert loopback.page_url == loopback.url and not loopback.token_required
    exposed = build(parse_args(["--host", "0.0.0.0", "--port", "0"]))
    assert re.fullmatch(r"http://127\.0\.0\.1:0/\?token=[\w-]{43}", exposed.page_url)
    assert build(parse_args(["--token", TOKEN, "--port", "0"])).page_url.endswith(TOKEN)
    monkeypatch.setenv("SONIOX_PROXY_TOKEN", TOKEN)
    assert build(parse_args(["--host", "0.0.0.0", "--port", "0"])).page_url.endswith(TOKEN)
    gated = build(parse_args(["--host", "0.0.0.0", "--port", "0", "--no-token"]))
    assert not gated.token_required
    args = parse_args(["--allow-host", "a.example", "--allow-host", "b.example",
                       "--max-sessions", "3"])
    assert args.allow_host == ["a.example", "b.example"] and args.max_sessions == 3
    for bad in (["--token", "x", "--no-token"], ["--max-sessions", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_cli_beyond_loopback_prints_a_token_url_and_requires_it(local_server, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "SONIOX_WS_URL": local_server.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "soniox_widget.proxy", "--host", "0.0.0.0", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env=env)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.search(r"serving http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)$", line.strip())
        assert match, line
        port, token = int(match.group(1)), match.group(2)
        assert len(token) >= 43  # secrets.token_urlsafe(32)
        assert (await http_get(port, "/"))[0] == 401
        assert (await http_get(port, f"/?token={token}"))[0] == 200
        async with connect(f"ws://127.0.0.1:{port}/ws?token={token}", open_timeout=10,
                           proxy=None) as ws:
            await ws.send(AUDIO)
            await ws.send("")
            replies = await asyncio.wait_for(_all(ws), 10)
        assert replies[-1]["finished"] is True
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        logs = (await proc.stderr.read()).decode()
        assert "access token is required" in logs
        assert token not in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- the session cap ---------------------------------------------------------------------


async def test_a_client_over_the_session_cap_gets_429_and_no_upstream_session(
        backend, local_server, no_task_leaks):
    async with ProxyServer(backend, port=0, max_sessions=2) as proxy:
        async with ws_connect(proxy) as first, ws_connect(proxy) as second:
            for ws in (first, second):
                await ws.send(AUDIO)
                await asyncio.wait_for(ws.recv(), 10)  # its session is open upstream
            async with ws_connect(proxy) as third:
                replies = await asyncio.wait_for(_all(third), 10)
                assert third.close_code == 1000  # like every error reply
            assert replies == [{
                "error_code": 429,
                "error_message": "the proxy is at its limit of 2 concurrent sessions; "
                                 "try again later",
            }]
            assert len(local_server.sessions) == 2
            for ws in (first, second):
                await ws.send("")
                assert (await asyncio.wait_for(_all(ws), 10))[-1]["finished"] is True
        await proxy.stop()  # waits for every handler: each gave its place back
        assert proxy.open_sessions == 0
    await no_task_leaks()

