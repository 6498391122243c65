"""The product end to end: JupyterLab + headless Chromium + fake microphone + kernel.

A notebook cell shows ``SonioxRecorder()`` (no key: the offline local engine), the
test clicks Record, lets the fake microphone speak, clicks Stop, and checks the
text in the page, the text in the kernel, and that every byte the browser
recorded reached the local server.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    ARTIFACTS,
    chromium,
    free_port,
    open_notebook,
    read_result,
    run_cell,
)

pytestmark = [pytest.mark.browser, pytest.mark.engine]

WER_BOUND = 0.35  # tiny.en on espeak speech through a fake mic, streamed: see README

REPORT_CELL = """
import json
from soniox_widget.local import shared_server
_stats = rec.audio_stats
_srv = [s for s in shared_server().sessions if s.audio_bytes]
json.dump({"final_text": rec.final_text, "status": rec.status, "error": rec.error,
           "engine": rec.engine_label, "kernel_bytes": _stats["bytes"],
           "kernel_chunks": _stats["chunks"],
           "server_bytes": _srv[-1].audio_bytes if _srv else None},
          open(RESULT, "w"))
"""


# A recorder on a scripted engine in the kernel: its words are a function of the bytes
# the server got, so tests can check the transcript exactly.
SCRIPTED_RECORDER_CELL = (
    "from soniox_widget import SonioxRecorder\n"
    "from soniox_widget.local import LocalSonioxServer, ScriptedEngine\n"
    "engine = ScriptedEngine(bytes_per_word=1500)\n"
    "srv = LocalSonioxServer(engine, record_audio=True).start_in_thread()\n"
    "rec = SonioxRecorder(url=srv.url)\nrec"
)


# JupyterLab shows its busy favicon whenever the kernel is busy: count how often.
COUNT_BUSY_FAVICONS = """() => {
  window.__busyFavicons = 0;
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.classList.contains("busy") && r.target.rel === "icon") window.__busyFavicons++;
    }
  }).observe(document.head, { subtree: true, attributes: true, attributeFilter: ["rel"] });
}"""


def record_for(page, ms: int):
    """Click Record, wait until recording, let the fake mic speak, click Stop, wait idle."""
    page.click(".jp-OutputArea-output .soniox-button")
    wait_status(page, "recording")
    page.wait_for_timeout(ms)
    page.click(".jp-OutputArea-output .soniox-button")
    wait_status(page, "idle")


def wait_status(page, status: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector(f".jp-OutputArea-output .soniox-recorder[data-status='{status}']",
                           timeout=timeout_ms)


def recorder_notebook(lab, stem: str) -> str:
    """A notebook: a SonioxRecorder on the default engine, then a cell that writes what
    kernel and server saw to ``STEM.json`` (read with ``read_result``)."""
    return lab.write_notebook(f"{stem}.ipynb", [
        "from soniox_widget import SonioxRecorder\nrec = SonioxRecorder()\nrec",
        f"RESULT = '{stem}.json'\n" + REPORT_CELL,
    ])


def test_speak_and_see_the_transcript_in_page_and_kernel(lab, speech_wav, tmp_path):
    speak_and_check(lab, speech_wav, tmp_path, "widget")


def test_notebook_7(notebook7, speech_wav, tmp_path):
    """The same recording in Jupyter Notebook 7 (its own shell, same widget manager)."""
    speak_and_check(notebook7, speech_wav, tmp_path, "widget-notebook7")


def speak_and_check(lab, speech_wav, tmp_path, shot: str) -> None:
    """Record the fake microphone's sentence; check page, kernel and server agree."""
    from tests.speech import word_error_rate

    wav, spoken = speech_wav
    name = recorder_notebook(lab, "speak")
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        root = page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        badge = page.inner_text(".jp-OutputArea-output .soniox-badge")
        assert "offline" in badge
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "recording")
        # The WAV has ~4 s of speech then silence; non-final text shows up while speaking.
        page.wait_for_function(
            "() => { const t = [...document.querySelectorAll('.jp-OutputArea-output "
            ".soniox-final, .jp-OutputArea-output .soniox-nonfinal')].map(e => e.innerText)"
            ".join(' ').trim(); return t.split(/\\s+/).length >= 4; }",
            timeout=30_000,
        )
        root.screenshot(path=str(ARTIFACTS / f"{shot}-recording.png"))
        page.wait_for_timeout(3500)
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "idle", timeout_ms=60_000)
        shown = page.inner_text(".jp-OutputArea-output .soniox-final").strip()
        browser_bytes = int(root.get_attribute("data-bytes-sent") or -1)
        page.locator(".jp-OutputArea-output .soniox-recorder").screenshot(
            path=str(ARTIFACTS / f"{shot}.png"))
        run_cell(page, 1)
        result = read_result(lab, "speak.json")

    assert result["error"] == "" and result["status"] == "idle"
    assert result["engine"] == "local engine (offline)"
    assert shown == result["final_text"].strip()
    assert word_error_rate(spoken, shown) <= WER_BOUND, shown
    assert browser_bytes > 1000
    assert result["kernel_bytes"] == browser_bytes == result["server_bytes"]


def test_microphone_denied_then_allowed(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("denied.ipynb", [
        "from soniox_widget import SonioxRecorder\nrec = SonioxRecorder()\nrec",
        "import json\njson.dump({'error': rec.error, 'status': rec.status},"
        " open('denied.json', 'w'))",
    ])
    with chromium(wav, fake_ui=False, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        context.clear_permissions()
        run_cell(page, 0)
        page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "error")
        shown = page.inner_text(".jp-OutputArea-output .soniox-error")
        run_cell(page, 1)
        result = read_result(lab, "denied.json")
        assert "permission" in shown.lower()
        assert "permission" in result["error"].lower() and result["status"] == "error"
        # Allowed now: the same widget records again.
        context.grant_permissions(["microphone"], origin=f"http://127.0.0.1:{lab.port}")
        record_for(page, 1500)
        assert not page.is_visible(".jp-OutputArea-output .soniox-error")


def test_unreachable_upstream_shows_its_error_then_records_again(lab, speech_wav, tmp_path):
    """Nothing listens on the port at first; then a scripted local server does."""
    wav, _ = speech_wav
    port = free_port()
    url = f"ws://127.0.0.1:{port}/transcribe-websocket"
    name = lab.write_notebook("unreachable.ipynb", [
        f"from soniox_widget import SonioxRecorder\nrec = SonioxRecorder(url={url!r})\nrec",
        "import json\njson.dump({'error': rec.error, 'status': rec.status},"
        " open('unreachable.json', 'w'))",
        "from soniox_widget.local import LocalSonioxServer, ScriptedEngine\n"
        f"srv = LocalSonioxServer(ScriptedEngine('one two three four five six'), port={port})\n"
        "srv.start_in_thread()",
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "error", timeout_ms=30_000)
        shown = page.inner_text(".jp-OutputArea-output .soniox-error")
        run_cell(page, 1)
        result = read_result(lab, "unreachable.json")
        assert "Cannot reach" in shown and "Cannot reach" in result["error"]
        run_cell(page, 2)  # now something listens there
        record_for(page, 2000)
        assert "one two" in page.inner_text(".jp-OutputArea-output .soniox-final")


def test_exact_transcript_and_every_byte_with_a_scripted_engine(lab, speech_wav, tmp_path):
    """Engine-independent: the scripted engine's words are a function of the bytes it got,
    so page, kernel and server must agree exactly; and no byte may go missing."""
    wav, _ = speech_wav
    name = lab.write_notebook("exact.ipynb", [
        SCRIPTED_RECORDER_CELL,
        "import json\n_s = srv.sessions[-1]\n"
        "json.dump({'final_text': rec.final_text, 'expected': engine.text_for(bytes(_s.audio)),"
        " 'server_bytes': _s.audio_bytes, 'kernel_bytes': rec.audio_stats['bytes'],"
        " 'kept_audio': len(rec.last_audio), 'status': rec.status},"
        " open('exact.json', 'w'))",
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        root = page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        page.evaluate(COUNT_BUSY_FAVICONS)
        record_for(page, 3000)
        shown = page.inner_text(".jp-OutputArea-output .soniox-final")
        browser_bytes = int(root.get_attribute("data-bytes-sent"))
        chunks = int(root.get_attribute("data-chunks-sent"))
        busy_shown = page.evaluate("() => window.__busyFavicons")
        root.screenshot(path=str(ARTIFACTS / "widget-scripted.png"))
        run_cell(page, 1)
        result = read_result(lab, "exact.json")
    assert result["status"] == "idle"
    assert browser_bytes > 3000
    assert browser_bytes == result["kernel_bytes"] == result["server_bytes"]
    assert result["kept_audio"] == browser_bytes
    assert result["final_text"] == result["expected"] != ""
    assert " ".join(shown.split()) == result["expected"]
    # soniox_widget.jupyter_quiet_status: the page went busy for the start and stop
    # messages, not for each chunk (without it: at least once per chunk).
    assert chunks >= 15
    assert busy_shown <= 4, f"the busy favicon was shown {busy_shown} times for {chunks} chunks"


def test_two_views_show_the_same_transcript(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("twoviews.ipynb", [
        SCRIPTED_RECORDER_CELL,
        "rec",
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        run_cell(page, 1)
        views = page.locator(".jp-OutputArea-output .soniox-recorder")
        views.nth(1).wait_for(timeout=60_000)
        views.nth(0).locator(".soniox-button").click()
        page.wait_for_selector(".soniox-recorder[data-status='recording']", timeout=60_000)
        # Only one view records: the other's button is disabled meanwhile.
        assert views.nth(1).locator(".soniox-button").is_disabled()
        page.wait_for_timeout(2500)
        views.nth(0).locator(".soniox-button").click()
        wait_status(page, "idle")
        first = views.nth(0).locator(".soniox-final").inner_text()
        second = views.nth(1).locator(".soniox-final").inner_text()
        assert first.strip() and first == second
        # A view created after the recording gets the whole transcript as a snapshot.
        run_cell(page, 1)
        page.wait_for_function(
            "(t) => { const v = document.querySelectorAll('.jp-OutputArea-output "
            ".soniox-final'); return v.length >= 2 && v[v.length - 1].innerText === t; }",
            arg=first, timeout=30_000)


def test_a_busy_cell_loses_no_audio(lab, speech_wav, tmp_path):
    """While a cell blocks the kernel, the browser's chunks wait; after it, all arrive."""
    wav, _ = speech_wav
    name = lab.write_notebook("busy.ipynb", [
        SCRIPTED_RECORDER_CELL,
        "import time\ntime.sleep(4)  # a busy cell while the microphone records",
        "import json\n_s = srv.sessions[-1]\n"
        "json.dump({'final_text': rec.final_text, 'expected': engine.text_for(bytes(_s.audio)),"
        " 'server_bytes': _s.audio_bytes, 'status': rec.status}, open('busy.json', 'w'))",
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        root = page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "recording")
        run_cell(page, 1)  # returns when the kernel is idle again
        page.wait_for_timeout(1000)
        page.click(".jp-OutputArea-output .soniox-button")
        wait_status(page, "idle")
        browser_bytes = int(root.get_attribute("data-bytes-sent"))
        run_cell(page, 2)
        result = read_result(lab, "busy.json")
    assert result["status"] == "idle"
    assert browser_bytes > 5000  # more than 4 s of audio at 32 kb/s
    assert result["server_bytes"] == browser_bytes
    assert result["final_text"] == result["expected"] != ""


@pytest.fixture(scope="module")
def human_wav(tmp_path_factory):
    """JFK's "ask not ..." (a person, not espeak-ng) and 6 s of silence, as a 48 kHz WAV
    for the fake microphone (which loops its file: the silence keeps one copy per take)."""
    import numpy as np

    from soniox_widget.audio import decode_file
    from tests import human_speech
    from tests.speech import write_wav

    clip, = human_speech.clips("jfk_ask_not")
    samples = np.concatenate([np.zeros(8000, np.float32), decode_file(clip.path),
                              np.zeros(6 * 16000, np.float32)])
    at_48k = np.repeat(samples, 3)  # 16 -> 48 kHz; the browser filters it again anyway
    pcm = (np.clip(at_48k, -1, 1) * 32767).astype("<i2").tobytes()
    path = write_wav(tmp_path_factory.mktemp("human") / "jfk.wav", pcm, 48000)
    return path, clip


def test_a_person_speaking_is_written_once_in_jupyterlab(lab, human_wav, tmp_path):
    """Issue 23: live on the offline engine, a person's speech was written again and
    again ("Fail again." five times). The recorder in JupyterLab, the fake microphone
    playing JFK's sentence: the page shows it once, as well as the file decode has it."""
    from soniox_widget.local.whisper_engine import WhisperEngine
    from tests import human_speech
    from tests.speech import word_error_rate

    wav, clip = human_wav
    name = recorder_notebook(lab, "person")
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        record_for(page, 14_000)  # 0.5 s lead, 11 s of speech, then silence
        shown = page.inner_text(".jp-OutputArea-output .soniox-final").strip()
        run_cell(page, 1)
        result = read_result(lab, "person.json")

    assert result["error"] == "" and shown == result["final_text"].strip()
    engine = WhisperEngine()
    whole = human_speech.file_decode(engine, clip.path)
    assert human_speech.extra_repeats(shown, clip.reference, whole) == 0, shown
    assert word_error_rate(clip.reference, shown) <= (
        word_error_rate(clip.reference, whole) + 0.15), (shown, whole)
