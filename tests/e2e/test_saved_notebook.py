"""The transcript survives saving (issue 13): a notebook that recorded from a file,
executed by nbclient and saved with its widget state, shows the transcript when it is
reopened without running it and in its HTML export; the file never holds the key.

What is not tested here, and why (measured with JupyterLab 4.6 / ipywidgets 8.1):
with *no kernel at all* (``No Kernel``, or ``notebook_starts_kernel=False``) JupyterLab's
widget manager never restores saved widgets (every widget output stays "Loading
widget...", jupyter-widgets/ipywidgets#3773), so the reopened notebook is opened as
JupyterLab opens it by default: a fresh kernel starts, and no cell runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, open_notebook
from tests.e2e.saved_notebook import (
    FAKE_KEY,
    SPOKEN,
    execute_and_save,
    export_html,
    saved_texts,
    serve_export_locally,
    trust,
)

pytestmark = pytest.mark.browser

OUT = ".jp-OutputArea-output"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, speech_wav) -> Path:
    wav, _ = speech_wav
    return execute_and_save(wav, tmp_path_factory.mktemp("saved") / "saved.ipynb")


def test_the_saved_file_holds_the_transcript_and_never_the_key(saved):
    text = saved.read_text()
    nb = nbformat.reads(text, as_version=4)
    assert saved_texts(nb) == [SPOKEN]
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert SPOKEN in printed
    assert "key sent in the header: True" in printed  # the key was really used...
    assert FAKE_KEY not in text  # ...and is nowhere in the saved notebook


def test_reopened_without_running_it_shows_the_saved_transcript(lab, saved, speech_wav,
                                                                tmp_path):
    wav, _ = speech_wav
    shutil.copy(saved, lab.root / "reopened.ipynb")
    trust(lab.root / "reopened.ipynb")
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, "reopened.ipynb")  # a fresh kernel; nothing runs
        views = page.locator(f"{OUT} .soniox-recorder")
        page.wait_for_function(
            "(t) => { const v = [...document.querySelectorAll("
            "'.jp-OutputArea-output .soniox-final')];"
            " return v.length === 2 && v.every((e) => e.innerText.trim() === t); }",
            arg=SPOKEN, timeout=60_000)
        assert views.count() == 2  # both cells that displayed `rec`
        # Nothing was executed: the prompts still show the saved run's counts.
        prompts = page.locator(".jp-InputArea-prompt").all_inner_texts()
        assert [p.strip() for p in prompts] == ["[1]:", "[2]:", "[3]:"]
        views.first.screenshot(path=str(ARTIFACTS / "saved-notebook-reopened.png"))
        assert FAKE_KEY not in page.content()


def test_the_html_export_embeds_the_transcript_and_never_the_key(saved, tmp_path):
    html = export_html(saved, tmp_path).read_text()
    assert html.count("application/vnd.jupyter.widget-view+json") >= 2
    assert SPOKEN in html
    assert FAKE_KEY not in html


def test_the_html_export_shows_the_transcript(saved, speech_wav, tmp_path):
    """Opened in Chromium with the embed manager served locally: the widget's own view
    draws the saved transcript from the embedded state, with no kernel anywhere."""
    html = export_html(saved, tmp_path)
    wav, _ = speech_wav
    with chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        asked = serve_export_locally(page)
        page.goto(html.as_uri())
        page.wait_for_function(
            "(t) => { const v = [...document.querySelectorAll('.soniox-final')];"
            " return v.length === 2 && v.every((e) => e.innerText.trim() === t); }",
            arg=SPOKEN, timeout=60_000)
        page.locator(".soniox-recorder").first.screenshot(
            path=str(ARTIFACTS / "saved-notebook-html-export.png"))
        assert FAKE_KEY not in page.content()
    assert any("anywidget@" in u for u in asked)  # the view came from anywidget's module
