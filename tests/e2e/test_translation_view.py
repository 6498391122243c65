"""The translation shows as its own line under the spoken words, in a real page.

The kernel records through the widget's own path (``rec.feed``) to a stand-in that
speaks Soniox's one-way translation replies (original tokens, then translated ones);
the page must show the spoken words and the translation apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import chromium, open_notebook, run_cell

pytestmark = [pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
WIDGET = ".jp-OutputArea-output .soniox-recorder"

SETUP = f"""
import asyncio, json, sys, threading
sys.path.insert(0, {str(REPO)!r})
from tests import standin
from soniox_widget import SonioxRecorder

def tok(text, status, final=True, lang="en"):
    return {{"text": text, "is_final": final, "translation_status": status, "language": lang}}

async def run(ws):
    await standin.read_start(ws)
    await ws.send(json.dumps({{"tokens": [tok("Hello", "original"), tok(" world.", "original"),
                                          tok(" Bon", "translation", False, "fr")]}}))
    await ws.send(json.dumps({{"tokens": [tok("Bonjour", "translation", lang="fr"),
                                          tok(" le monde.", "translation", lang="fr")]}}))
    async for msg in ws:
        if msg in ("", b""):
            await ws.send(json.dumps({{"tokens": [], "finished": True}}))
            await ws.close()
            return

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
server = asyncio.run_coroutine_threadsafe(standin.StandIn(run).__aenter__(), loop).result(10)
rec = SonioxRecorder(url=server.url, translation={{"type": "one_way", "target_language": "fr"}})
rec
"""
FEED = "rec.feed(bytes(range(256)) * 4); rec.stop()"


def test_translation_is_its_own_line(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("translation.ipynb", [SETUP, FEED])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        page.wait_for_selector(WIDGET, timeout=60_000)
        assert page.locator(f"{WIDGET} .soniox-translation").is_hidden()  # none yet
        run_cell(page, 1)
        page.wait_for_selector(f"{WIDGET}[data-status='idle']", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelector('.jp-OutputArea-output .soniox-translation')"
            ".innerText.includes('Bonjour le monde.')", timeout=30_000)
        spoken = page.locator(f"{WIDGET} .soniox-transcript").inner_text()
        translated = page.locator(f"{WIDGET} .soniox-translation")
        assert "Hello world." in spoken and "Bonjour" not in spoken
        assert translated.is_visible() and "Hello" not in translated.inner_text()
        style = translated.evaluate("e => getComputedStyle(e).fontStyle")
        assert style == "italic"
