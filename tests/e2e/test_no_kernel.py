"""A page with no kernel behind the widget (issue 20): the HTML export of a notebook
saved with its widget state, opened with the embed manager served locally.

The widget shows the saved transcript and a plain note saying recording needs a running
kernel; Record is disabled; and the microphone is never asked for, not even by a click
on Record in the first seconds, before the view has found out that no kernel answers.
The page's getUserMedia is wrapped to count calls (the fake microphone would grant any).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.accessibility import axe_violations
from tests.e2e.conftest import ARTIFACTS, chromium
from tests.e2e.saved_notebook import SPOKEN, execute_and_save, export_html, serve_export_locally

pytestmark = pytest.mark.browser

NOTE = "Recording needs a running kernel: open the notebook in Jupyter and run the cell."
VIEW = ".soniox-recorder"

COUNT_GET_USER_MEDIA = """
window.__getUserMediaCalls = 0;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.__getUserMediaCalls += 1;
    return real(constraints);
  };
}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, speech_wav) -> Path:
    wav, _ = speech_wav
    folder = tmp_path_factory.mktemp("no-kernel")
    return export_html(execute_and_save(wav, folder / "saved.ipynb"), folder)


def test_the_html_export_never_opens_the_microphone_and_says_why(exported, speech_wav,
                                                                 tmp_path):
    wav, _ = speech_wav
    with chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        page.add_init_script(COUNT_GET_USER_MEDIA)
        serve_export_locally(page)
        page.goto(exported.as_uri())
        page.wait_for_function(
            "(t) => { const v = [...document.querySelectorAll('.soniox-final')];"
            " return v.length === 2 && v.every((e) => e.innerText.trim() === t); }",
            arg=SPOKEN, timeout=60_000)
        assert page.evaluate("() => typeof navigator.mediaDevices.getUserMedia") == "function"
        first = page.locator(VIEW).first
        # Before the view knows no kernel answers, Record may be pressed: it waits for a
        # kernel to take the recording and asks for no microphone meanwhile.
        if not first.locator(".soniox-button").is_disabled():
            first.locator(".soniox-button").click()
            page.wait_for_function(
                "() => ['starting', 'no-kernel'].includes("
                "document.querySelector('.soniox-recorder').dataset.phase)", timeout=10_000)
        # Then every view says why it cannot record, and Record is disabled.
        page.wait_for_function(
            "(note) => { const v = [...document.querySelectorAll('.soniox-notice')];"
            " return v.length === 2 && v.every((e) => !e.hidden && e.innerText.trim() === note);"
            " }", arg=NOTE, timeout=60_000)
        for i in range(2):
            view = page.locator(VIEW).nth(i)
            assert view.get_attribute("data-phase") == "no-kernel"
            assert view.locator(".soniox-button").is_disabled()
            assert view.locator(".soniox-status").inner_text().strip() == "No kernel"
            assert view.locator(".soniox-final").inner_text().strip() == SPOKEN
            assert view.locator(".soniox-error").is_hidden()
        # The keyboard cannot start it either.
        first.locator(".soniox-button").focus()
        page.keyboard.press("Space")
        page.keyboard.press("Enter")
        first.screenshot(path=str(ARTIFACTS / "no-kernel-html-export.png"))
        assert axe_violations(page, first.element_handle()) == []
        assert first.get_attribute("data-phase") == "no-kernel"
        assert page.evaluate("() => window.__getUserMediaCalls") == 0
