"""The widget inside marimo (issue 13): ``mo.ui.anywidget(SonioxRecorder())``.

The notebook is the shipped example, notebooks/marimo_demo.py, served by a real
``marimo edit`` or ``marimo run`` on 127.0.0.1 and driven by headless Chromium with
the fake microphone. Its sessions go to a scripted engine in this process (through
``SONIOX_WS_URL``), whose words are a function of the bytes it got, so the page, the
dependent cell and the server must agree exactly.

marimo re-runs a cell that reads ``recorder.value`` only when the change comes from
the browser; the widget's view sets ``saved_transcript`` from the browser when a
recording ends, so the "Last recording" cell must follow each recording by itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from tests.e2e.conftest import ARTIFACTS, chromium, free_port
from tests.e2e.theme_check import contrast_report, too_faint
from tests.processes import terminate

pytest.importorskip("marimo", reason="marimo is not installed (the [test] extra has it)")

pytestmark = pytest.mark.browser

DEMO = Path(__file__).resolve().parents[2] / "notebooks" / "marimo_demo.py"
WIDGET = ".soniox-recorder"  # Playwright's CSS engine reaches into marimo's shadow roots
LAST = ".last-recording"  # the dependent cell's output


@contextlib.contextmanager
def marimo_server(mode: str, tmp: Path, ws_url: str | None, theme: str = "light"
                  ) -> Iterator[str]:
    """``marimo edit|run`` of a copy of the demo on 127.0.0.1 (no token, no update
    check, settings from a scratch config); yields the page's URL. Sessions go to
    ``ws_url``, or with None to what the demo picks by itself (no key: the offline
    engine)."""
    app_dir = tmp / f"marimo-{mode}-{theme}"
    (app_dir / "xdg" / "marimo").mkdir(parents=True)
    shutil.copy(DEMO, app_dir / "marimo_demo.py")
    # auto_instantiate: `marimo edit` runs the notebook when it opens (its default
    # waits for a click).
    (app_dir / "xdg" / "marimo" / "marimo.toml").write_text(
        f'[display]\ntheme = "{theme}"\n[runtime]\nauto_instantiate = true\n')
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env.update(XDG_CONFIG_HOME=str(app_dir / "xdg"), MARIMO_SKIP_UPDATE_CHECK="1")
    if ws_url is not None:
        env["SONIOX_WS_URL"] = ws_url
    port = free_port()
    log = ARTIFACTS / f"marimo-{mode}-{theme}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marimo", mode, "marimo_demo.py", "--headless",
             "--no-token", "--host", "127.0.0.1", "--port", str(port)],
            cwd=app_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"marimo {mode} did not start; see {log}")
                    time.sleep(0.3)
            yield url + "/"
        finally:
            terminate(proc)


def open_app(context, url: str):
    page = context.new_page()
    page.goto(url, timeout=60_000)
    page.wait_for_selector(WIDGET, timeout=90_000)
    return page


def record(page, min_bytes: int = 6000) -> None:
    """Record until the browser has sent ``min_bytes``, stop, and wait until idle."""
    page.click(f"{WIDGET} .soniox-button")
    root = page.wait_for_selector(f"{WIDGET}[data-status='recording']", timeout=60_000)
    page.wait_for_function("([el, n]) => Number(el.dataset.bytesSent || 0) >= n",
                           arg=[root, min_bytes], timeout=30_000)
    page.click(f"{WIDGET} .soniox-button")
    page.wait_for_selector(f"{WIDGET}[data-status='idle']", timeout=60_000)


def expected_text(server: LocalSonioxServer, engine: ScriptedEngine) -> str:
    """What the engine said for the audio of its latest session."""
    return engine.text_for(bytes(server.sessions[-1].audio))


def shown(page, selector: str) -> str:
    return " ".join(page.inner_text(selector).split())


def wait_for_dependent_cell(page, text: str) -> str:
    """The dependent cell re-runs by itself; wait (bounded) until it shows ``text``."""
    with contextlib.suppress(PlaywrightTimeout):
        page.locator(LAST, has_text=re.compile(f"^\\s*{re.escape(text)}\\s*$")).wait_for(
            timeout=30_000)
    return shown(page, LAST) if page.locator(LAST).count() else ""


def test_marimo_edit_a_dependent_cell_follows_each_recording(scripted, speech_wav, tmp_path):
    server, engine = scripted
    wav, _ = speech_wav
    with marimo_server("edit", tmp_path, server.url) as url, \
            chromium(wav, tmp=tmp_path) as context:
        page = open_app(context, url)
        assert page.locator(LAST).count() == 0  # no recording yet: the placeholder
        record(page)
        first = expected_text(server, engine)
        assert shown(page, f"{WIDGET} .soniox-final") == first != ""
        assert wait_for_dependent_cell(page, first) == first
        page.screenshot(path=str(ARTIFACTS / "marimo-edit.png"), full_page=True)

        record(page)  # a second recording: the cell follows again
        second = expected_text(server, engine)
        assert len(server.sessions) == 2 and second != first
        assert wait_for_dependent_cell(page, second) == second


def test_marimo_run_app_view(scripted, speech_wav, tmp_path):
    """``marimo run``: the app view (outputs only, kernel in the server process)."""
    server, engine = scripted
    wav, _ = speech_wav
    with marimo_server("run", tmp_path, server.url) as url, \
            chromium(wav, tmp=tmp_path) as context:
        page = open_app(context, url)
        record(page)
        text = expected_text(server, engine)
        assert shown(page, f"{WIDGET} .soniox-final") == text != ""
        assert wait_for_dependent_cell(page, text) == text
        page.screenshot(path=str(ARTIFACTS / "marimo-run.png"), full_page=True)


@pytest.mark.engine
def test_marimo_run_the_demo_as_shipped_with_the_offline_engine(speech_wav, tmp_path):
    """No key, no URL: the demo transcribes the fake microphone's sentence offline."""
    from tests.speech import word_error_rate

    wav, spoken = speech_wav
    with marimo_server("run", tmp_path, None) as url, chromium(wav, tmp=tmp_path) as context:
        page = open_app(context, url)
        assert "offline" in page.inner_text(f"{WIDGET} .soniox-badge")
        # The WAV holds ~4 s of speech: ~6 s of audio at 32 kb/s is ~24 kB.
        record(page, min_bytes=24_000)
        text = shown(page, f"{WIDGET} .soniox-final")
        assert word_error_rate(spoken, text) <= 0.35, text  # as the JupyterLab test
        assert wait_for_dependent_cell(page, text) == text
        page.screenshot(path=str(ARTIFACTS / "marimo-run-offline.png"), full_page=True)


def test_marimo_dark_theme_is_dark_and_legible(scripted, speech_wav, tmp_path):
    server, engine = scripted
    wav, _ = speech_wav
    with marimo_server("edit", tmp_path, server.url, theme="dark") as url, \
            chromium(wav, tmp=tmp_path) as context:
        page = open_app(context, url)
        # marimo marks its dark theme with a class on <body>.
        page.wait_for_function("() => document.body.classList.contains('dark')",
                               timeout=30_000)
        record(page)
        assert shown(page, f"{WIDGET} .soniox-final") == expected_text(server, engine)
        root = page.wait_for_selector(WIDGET)
        root.screenshot(path=str(ARTIFACTS / "marimo-dark-widget.png"))
        page.screenshot(path=str(ARTIFACTS / "marimo-dark.png"), full_page=True)
        report = contrast_report(root)
    # Not a bright box on a dark page: the widget takes marimo's dark colours...
    assert report["backgroundLuminance"] < 0.1, report
    # ...and every text in it (button, status, badge, transcript) is WCAG AA.
    assert len(report["texts"]) >= 4, report
    assert too_faint(report) == [], report
