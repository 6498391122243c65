"""Faults during a recording in the real product: JupyterLab + headless Chromium + kernel.

* The upstream TCP connection is cut mid-recording (a :class:`~tests.faults.FaultyRelay`
  between the kernel and a scripted local server, run on its own loop in the kernel): the
  kernel reconnects, resends what was not final (decoded to PCM) and the words go on.
* A 25 s pause against a server that closes idle sessions after 10 s: the kernel's
  keepalives hold the one session open, and the words go on after Resume.

The scripted engine's words are a function of the bytes it got, and after a reconnect it
gets PCM, not the browser's webm; so these tests compare word counts, not text.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    ARTIFACTS,
    _console,
    chromium,
    open_notebook,
    read_result,
    run_cell,
)

pytestmark = [pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
WIDGET = ".jp-OutputArea-output .soniox-recorder"
BUTTON = f"{WIDGET} .soniox-button"
PAUSE = f"{WIDGET} .soniox-pause"

# Kernel side: a statuses list filled by rec.observe, so no status change can be missed.
OBSERVE_STATUS = (
    "statuses = []\n"
    "rec.observe(lambda ch: statuses.append(ch['new']), names='status')\n"
    "rec"
)

RELAY_CELL = f"""
import asyncio, sys, threading
sys.path.insert(0, {str(REPO)!r})
from tests.faults import FaultyRelay
from soniox_widget import SonioxRecorder
from soniox_widget.local import LocalSonioxServer, ScriptedEngine

srv = LocalSonioxServer(ScriptedEngine(bytes_per_word=1500), record_audio=True)
srv.start_in_thread()
# The relay runs on a loop of its own, so a cell can cut it while the kernel's loop streams.
relay_loop = asyncio.new_event_loop()
threading.Thread(target=relay_loop.run_forever, name="faulty-relay", daemon=True).start()

async def _open_relay():
    return await FaultyRelay(srv.port).__aenter__()

relay = asyncio.run_coroutine_threadsafe(_open_relay(), relay_loop).result(10)

def relay_drop():
    return asyncio.run_coroutine_threadsafe(relay.drop(), relay_loop).result(10)

rec = SonioxRecorder(url=relay.url())
""" + OBSERVE_STATUS

DROP_CELL = """
words_before_drop = len(rec.final_text.split())
status_before_drop = rec.status
connections_cut = relay_drop()
"""

DROP_REPORT_CELL = """
import json
json.dump({"final_text": rec.final_text, "status": rec.status, "error": rec.error,
           "audio_stats": rec.audio_stats, "statuses": statuses,
           "words_before_drop": words_before_drop, "status_before_drop": status_before_drop,
           "connections_cut": connections_cut, "relay_connections": relay.connections,
           "server_sessions": len([s for s in srv.sessions if s.audio_bytes]),
           "server_errors": [s.error for s in srv.sessions if s.error]},
          open("faults-drop.json", "w"))
"""

PAUSE_SERVER_CELL = """
from soniox_widget import SonioxRecorder
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
srv = LocalSonioxServer(ScriptedEngine(bytes_per_word=1500), record_audio=True,
                        idle_timeout=10).start_in_thread()
rec = SonioxRecorder(url=srv.url)
""" + OBSERVE_STATUS

MID_PAUSE_CELL = """
import json
json.dump({"status": rec.status, "words": len(rec.final_text.split()), "error": rec.error,
           "server_sessions": len(srv.sessions),
           "keepalives": [s.keepalives for s in srv.sessions]},
          open("faults-mid-pause.json", "w"))
"""

PAUSE_REPORT_CELL = """
import json
_audio = [s for s in srv.sessions if s.audio_bytes]
json.dump({"final_text": rec.final_text, "status": rec.status, "error": rec.error,
           "audio_stats": rec.audio_stats, "statuses": statuses,
           "sessions": len(srv.sessions), "audio_sessions": len(_audio),
           "keepalives": _audio[0].keepalives if _audio else None,
           "server_error": _audio[0].error if _audio else None,
           "finished": _audio[0].finished if _audio else None},
          open("faults-pause.json", "w"))
"""

CLEANUP_CELL = """
with __import__("contextlib").suppress(Exception):
    rec.close()
    if "relay" in globals():
        asyncio.run_coroutine_threadsafe(relay.aclose(), relay_loop).result(10)
        relay_loop.call_soon_threadsafe(relay_loop.stop)
    srv.stop_thread()
"""

# Every data-status the widget takes from now on (old values too: none is missed).
WATCH_STATUSES = """() => {
    const box = document.querySelector('.jp-OutputArea-output .soniox-recorder');
    window.__statuses = [box.dataset.status];
    new MutationObserver((records) => {
        for (const r of records) if (r.oldValue !== null) window.__statuses.push(r.oldValue);
        window.__statuses.push(box.dataset.status);
    }).observe(box, {attributes: true, attributeFilter: ['data-status'],
                     attributeOldValue: true});
}"""

FINAL_WORDS = (
    "() => { const e = document.querySelector('.jp-OutputArea-output .soniox-final');"
    " return e ? e.innerText.split(/\\s+/).filter(Boolean).length : 0; }"
)


def wait_status(page, status: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_selector(f"{WIDGET}[data-status='{status}']", timeout=timeout_ms)


def wait_final_words(page, n: int = 1, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(f"() => ({FINAL_WORDS})() >= {n}", timeout=timeout_ms)


def page_statuses(page) -> list[str]:
    """The statuses the page showed, consecutive repeats folded."""
    seen: list[str] = []
    for status in page.evaluate("() => window.__statuses || []"):
        if not seen or seen[-1] != status:
            seen.append(status)
    return seen


@contextlib.contextmanager
def screenshot_on_failure(page, name: str):
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}-failed.png"))
        raise


def test_upstream_cut_mid_recording_reconnects_and_words_keep_coming(
        lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("faults-drop.ipynb", [
        RELAY_CELL, DROP_CELL, DROP_REPORT_CELL, CLEANUP_CELL,
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        with screenshot_on_failure(page, "faults-drop"):
            run_cell(page, 0)
            page.wait_for_selector(WIDGET, timeout=60_000)
            page.click(BUTTON)
            wait_status(page, "recording")
            wait_final_words(page, 2)
            page.evaluate(WATCH_STATUSES)
            run_cell(page, 1)  # cuts the relayed connection, both sides, no close frame
            # The kernel notices, reconnects (0.5 s back-off) and goes on recording.
            try:
                page.wait_for_function(
                    "() => window.__statuses.includes('reconnecting') && document"
                    ".querySelector('.jp-OutputArea-output .soniox-recorder')"
                    ".dataset.status === 'recording'", timeout=30_000)
            except Exception:
                # The page may have been quicker than the observer; the kernel-side list
                # below cannot miss the reconnect. It must be recording again, though.
                wait_status(page, "recording")
            words_at_reconnect = page.evaluate(FINAL_WORDS)
            page.wait_for_timeout(4000)
            page.click(BUTTON)
            wait_status(page, "idle")
            shown = page.inner_text(f"{WIDGET} .soniox-final")
            seen_in_page = page_statuses(page)
            run_cell(page, 2)
            result = read_result(lab, "faults-drop.json")
            run_cell(page, 3)

    detail = {**result, "page_statuses": seen_in_page, "console": _console[-10:]}
    assert result["connections_cut"] >= 1, detail
    assert result["status_before_drop"] == "recording", detail
    assert result["status"] == "idle" and result["error"] == "", detail
    assert result["audio_stats"]["connections"] >= 2, detail
    assert result["server_sessions"] >= 2 and result["relay_connections"] >= 2, detail
    assert "reconnecting" in result["statuses"], detail
    after = result["statuses"][result["statuses"].index("reconnecting"):]
    assert "recording" in after and after[-1] == "idle", detail
    assert "error" not in result["statuses"], detail
    # The page showed the reconnect (unless it was quicker than the observer), then
    # recording again, then idle.
    if "reconnecting" in seen_in_page:
        assert "recording" in seen_in_page[seen_in_page.index("reconnecting"):], detail
    assert seen_in_page[-1] == "idle" and "error" not in seen_in_page, detail
    final_words = len(result["final_text"].split())
    assert final_words > result["words_before_drop"] >= 2, detail
    assert final_words > words_at_reconnect, detail
    assert " ".join(shown.split()) == " ".join(result["final_text"].split()), detail


def test_a_25_second_pause_keeps_the_session_and_words_follow(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("faults-pause.ipynb", [
        PAUSE_SERVER_CELL, MID_PAUSE_CELL, PAUSE_REPORT_CELL, CLEANUP_CELL,
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        with screenshot_on_failure(page, "faults-pause"):
            run_cell(page, 0)
            page.wait_for_selector(WIDGET, timeout=60_000)
            page.click(BUTTON)
            wait_status(page, "recording")
            wait_final_words(page, 2)
            page.click(PAUSE)
            wait_status(page, "paused")
            assert page.inner_text(PAUSE).strip() == "Resume"
            # The length of the pause is the point: 2.5 times the server's idle timeout.
            page.wait_for_timeout(25_000)
            run_cell(page, 1)
            mid = read_result(lab, "faults-mid-pause.json")
            assert page.get_attribute(WIDGET, "data-status") == "paused", mid
            page.click(PAUSE)  # Resume
            wait_status(page, "recording")
            page.wait_for_timeout(3000)
            page.click(BUTTON)
            wait_status(page, "idle")
            shown = page.inner_text(f"{WIDGET} .soniox-final")
            run_cell(page, 2)
            result = read_result(lab, "faults-pause.json")
            run_cell(page, 3)

    detail = {**result, "mid_pause": mid, "console": _console[-10:]}
    assert mid["status"] == "paused" and mid["error"] == "", detail
    assert mid["server_sessions"] == 1, detail
    assert result["status"] == "idle" and result["error"] == "", detail
    assert result["sessions"] == result["audio_sessions"] == 1, detail
    assert result["audio_stats"]["connections"] == 1, detail
    assert result["server_error"] is None and result["finished"], detail
    assert result["keepalives"] >= 3, detail
    assert "paused" in result["statuses"] and "reconnecting" not in result["statuses"], detail
    after_pause = result["statuses"][result["statuses"].index("paused"):]
    assert "recording" in after_pause, detail
    assert len(result["final_text"].split()) > mid["words"] >= 2, detail
    assert " ".join(shown.split()) == " ".join(result["final_text"].split()), detail
