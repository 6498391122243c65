"""The standalone proxy's page in headless Chromium with a fake microphone."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from soniox_widget.backend import Backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.proxy import ProxyServer
from tests.e2e.conftest import ARTIFACTS, chromium, free_port

pytestmark = pytest.mark.browser
SCRIPT = "the proxy page shows every word it hears"
TOKEN = "e2e-proxy-token-5c8f1a3b9d2e"


@contextlib.contextmanager
def proxy_in_thread(upstream_url: str | None, **proxy_options):
    """A scripted local server (unless a URL is given) and a proxy, on their own loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def main() -> None:
        stack = contextlib.AsyncExitStack()
        async with stack:
            url = upstream_url
            if url is None:
                local = await stack.enter_async_context(
                    LocalSonioxServer(ScriptedEngine(SCRIPT, bytes_per_word=600),
                                      record_audio=True))
                state["local"] = local
                url = local.url
            proxy = await stack.enter_async_context(
                ProxyServer(Backend(url, None, "test", is_local=True), port=0,
                            **proxy_options))
            state["proxy"] = proxy
            state["stop"] = asyncio.Event()
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(20)
        loop.close()


def record_a_few_words(page) -> str:
    """Start, wait for words, stop, wait for the end; the text the page shows."""
    page.click("#trigger")
    page.wait_for_function(
        "() => document.getElementById('final').innerText.split(/\\s+/).length >= 3",
        timeout=30_000)
    page.click("#trigger")
    page.wait_for_function(
        f"() => document.getElementById('final').innerText.includes({SCRIPT.split()[3]!r})"
        " && document.getElementById('nonfinal').innerText === ''", timeout=30_000)
    return page.inner_text("#final")


def test_page_records_and_shows_the_text(speech_wav, tmp_path):
    wav, _ = speech_wav
    with proxy_in_thread(None) as state, chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        page.goto(state["proxy"].url, timeout=30_000)
        shown = record_a_few_words(page)
        page.screenshot(path=str(ARTIFACTS / "proxy-page.png"))
        assert page.inner_text("#error").strip() == ""
        record = state["local"].sessions[-1]
        assert record.finished
        # The page shows exactly the words the server sent for the bytes it received.
        expected = " ".join(SCRIPT.split()[: record.audio_bytes // 600])
        assert shown.strip() == expected


def test_page_with_a_token_takes_it_out_of_the_address_bar_and_records(speech_wav,
                                                                       tmp_path):
    wav, _ = speech_wav
    with proxy_in_thread(None, token=TOKEN) as state, \
            chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        refused = page.goto(state["proxy"].url, timeout=30_000)
        assert refused.status == 401 and "printed when it started" in page.content()
        page.goto(state["proxy"].page_url, timeout=30_000)
        page.wait_for_function("() => !location.search.includes('token')", timeout=10_000)
        assert TOKEN not in page.url
        assert page.evaluate("sessionStorage.getItem('soniox-proxy-token')") == TOKEN
        assert page.evaluate("document.cookie") == ""  # HttpOnly: not for scripts
        page.reload(timeout=30_000)  # no token in the URL now: the cookie lets it in
        assert page.is_visible("#trigger")
        record_a_few_words(page)
        assert page.inner_text("#error").strip() == ""
        assert state["local"].sessions[-1].finished


def test_unreachable_upstream_shows_its_error(speech_wav, tmp_path):
    wav, _ = speech_wav
    dead = f"ws://127.0.0.1:{free_port()}/transcribe-websocket"
    with proxy_in_thread(dead) as state, chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        page.goto(state["proxy"].url, timeout=30_000)
        page.click("#trigger")
        page.wait_for_function("() => document.getElementById('error').innerText.length > 0",
                               timeout=30_000)
        assert "cannot connect" in page.inner_text("#error").lower()
