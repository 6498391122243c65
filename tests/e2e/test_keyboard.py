"""The widget by keyboard only, and what axe-core says of it (issue 20).

In JupyterLab and Notebook 7: Tab to Record, Space starts a recording, Tab and Space
pause and resume it, Shift+Tab and Space stop it. The keyboard focus stays on the
control all along (it is marked busy, never disabled, while the kernel and the
microphone answer), its ring is visible at 3:1 or more against what surrounds it, and
axe-core finds no violation in the widget while recording and after, in the light and
the dark theme.
"""

from __future__ import annotations

import pytest

from tests.e2e.accessibility import axe_violations
from tests.e2e.conftest import ARTIFACTS, chromium, open_notebook, run_cell
from tests.e2e.test_notebook_widget import SCRIPTED_RECORDER_CELL, wait_status
from tests.e2e.theme_check import FOCUS_RING_JS, change_theme, wait_widget_theme

pytestmark = pytest.mark.browser

WIDGET = ".jp-OutputArea-output .soniox-recorder"
RECORD = f"{WIDGET} .soniox-button"
PAUSE = f"{WIDGET} .soniox-pause"
NON_TEXT_CONTRAST = 3.0  # WCAG 1.4.11 / 2.4.13: a focus indicator against its surroundings

FOCUSED_CLASS = "() => document.activeElement && document.activeElement.className"


def focused(page) -> str:
    return page.evaluate(FOCUSED_CLASS)


def tab_into_widget(page) -> None:
    """Put the focus just before the widget (its output area) and press Tab."""
    page.eval_on_selector(WIDGET, "(el) => { const out = el.closest('.jp-OutputArea-output');"
                                  " out.tabIndex = -1; out.focus(); }")
    page.keyboard.press("Tab")


def check_ring(page, name: str) -> dict:
    """The focused Record control's ring: visible, and at 3:1 or more around it."""
    ring = page.locator(RECORD).evaluate(FOCUS_RING_JS)
    page.locator(WIDGET).screenshot(path=str(ARTIFACTS / f"keyboard-{name}-focus.png"))
    assert ring["focused"], ring
    assert ring["style"] == "solid" and ring["width"] >= 2 and ring["offset"] >= 1, ring
    assert ring["vsSurroundings"] >= NON_TEXT_CONTRAST, ring
    return ring


def keyboard_record_stop(server, wav, tmp_path, app: str) -> dict:
    name = server.write_notebook(f"keyboard-{app}.ipynb", [SCRIPTED_RECORDER_CELL])
    measured: dict = {}
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, server, name)
        run_cell(page, 0)
        page.wait_for_selector(WIDGET, timeout=60_000)
        # A kernel behind the view: its snapshot answer (the label never says "No kernel").
        tab_into_widget(page)
        assert focused(page) == "soniox-button"
        measured["light ring"] = check_ring(page, f"{app}-light")

        page.keyboard.press("Space")
        wait_status(page, "recording")
        page.wait_for_selector(f"{WIDGET}[data-phase='recording']", timeout=30_000)
        assert focused(page) == "soniox-button", "focus kept through the start"
        assert page.inner_text(RECORD).strip() == "Stop"
        # The status is a polite live region; the meter says its value.
        status = page.locator(f"{WIDGET} .soniox-status")
        assert status.get_attribute("role") == "status"
        meter = page.locator(f"{WIDGET} .soniox-meter")
        assert meter.get_attribute("role") == "meter"
        page.wait_for_function(
            "(sel) => Number(document.querySelector(sel).getAttribute('aria-valuenow')) > 0",
            arg=f"{WIDGET} .soniox-meter", timeout=30_000)
        page.wait_for_function(
            "(sel) => (document.querySelector(sel).innerText || '').trim().split(/\\s+/)"
            ".length >= 2", arg=f"{WIDGET} .soniox-transcript", timeout=30_000)
        measured["light recording"] = axe_violations(page, page.query_selector(WIDGET))

        # Pause and resume from the keyboard, then back to Record.
        page.keyboard.press("Tab")
        assert focused(page) == "soniox-pause"
        page.keyboard.press("Space")
        page.wait_for_selector(f"{WIDGET}[data-phase='paused']", timeout=30_000)
        assert page.get_attribute(PAUSE, "aria-pressed") == "true"
        page.keyboard.press("Space")
        page.wait_for_selector(f"{WIDGET}[data-phase='recording']", timeout=30_000)
        page.keyboard.press("Shift+Tab")
        assert focused(page) == "soniox-button"

        page.keyboard.press("Space")
        wait_status(page, "idle")
        page.wait_for_selector(f"{WIDGET}[data-phase='idle']", timeout=30_000)
        assert focused(page) == "soniox-button", "focus kept through the stop"
        assert page.inner_text(RECORD).strip() == "Record"
        assert page.inner_text(f"{WIDGET} .soniox-final").strip()
        measured["light idle"] = axe_violations(page, page.query_selector(WIDGET))
        try:
            change_theme(page, "JupyterLab Dark", False)
            wait_widget_theme(page, page.query_selector(WIDGET), False)
            tab_into_widget(page)
            measured["dark ring"] = check_ring(page, f"{app}-dark")
            measured["dark idle"] = axe_violations(page, page.query_selector(WIDGET))
            page.keyboard.press("Space")
            page.wait_for_selector(f"{WIDGET}[data-phase='recording']", timeout=30_000)
            measured["dark recording"] = axe_violations(page, page.query_selector(WIDGET))
            page.keyboard.press("Space")
            page.wait_for_selector(f"{WIDGET}[data-phase='idle']", timeout=30_000)
            assert focused(page) == "soniox-button"
        finally:
            change_theme(page, "JupyterLab Light", True)  # the server is shared
    print(app, measured)
    return measured


def check(measured: dict) -> None:
    for state in ("light recording", "light idle", "dark idle", "dark recording"):
        assert measured[state] == [], (state, measured[state])


def test_jupyterlab_by_keyboard_only(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    check(keyboard_record_stop(lab, wav, tmp_path, "jupyterlab"))


def test_notebook_7_by_keyboard_only(notebook7, speech_wav, tmp_path):
    wav, _ = speech_wav
    check(keyboard_record_stop(notebook7, wav, tmp_path, "notebook7"))
