"""Light and dark themes of JupyterLab and Notebook 7 (issue 13): screenshots of the
widget with a transcript in test-artifacts/, and every text in it at WCAG AA.

The widget shows a transcript without recording anything: the notebook is the saved one
of tests/e2e/saved_notebook.py, reopened without running it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, open_notebook
from tests.e2e.saved_notebook import SPOKEN, execute_and_save, trust
from tests.e2e.theme_check import (
    change_theme,
    contrast_report,
    too_faint,
    wait_widget_theme,
)

pytestmark = pytest.mark.browser

WIDGET = ".jp-OutputArea-output .soniox-recorder"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, speech_wav) -> Path:
    wav, _ = speech_wav
    return execute_and_save(wav, tmp_path_factory.mktemp("themes") / "themes.ipynb")


def themes_of(server, saved: Path, wav: Path, tmp_path: Path, app: str) -> dict[str, dict]:
    """Open the saved notebook in ``server``; for the light then the dark theme, take a
    screenshot of the first view and measure its contrast."""
    shutil.copy(saved, server.root / "themes.ipynb")
    trust(server.root / "themes.ipynb")
    reports = {}
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, server, "themes.ipynb")
        page.wait_for_function(
            "(t) => [...document.querySelectorAll('.jp-OutputArea-output .soniox-final')]"
            ".some((e) => e.innerText.trim() === t)", arg=SPOKEN, timeout=60_000)
        root = page.locator(WIDGET).first
        try:
            for theme, light in (("JupyterLab Light", True), ("JupyterLab Dark", False)):
                change_theme(page, theme, light)
                # Wait until the widget has taken the theme's colours (measured, as below).
                wait_widget_theme(page, root.element_handle(), light)
                name = "light" if light else "dark"
                root.screenshot(path=str(ARTIFACTS / f"{app}-{name}-widget.png"))
                page.screenshot(path=str(ARTIFACTS / f"{app}-{name}.png"))
                reports[name] = contrast_report(root.element_handle())
        finally:
            change_theme(page, "JupyterLab Light", True)  # the next test's server is shared
    return reports


def check(reports: dict[str, dict]) -> None:
    light, dark = reports["light"], reports["dark"]
    assert light["backgroundLuminance"] > 0.8, light
    assert dark["backgroundLuminance"] < 0.1, dark  # not a white box on a dark page
    for report in (light, dark):
        assert len(report["texts"]) >= 4, report  # button, status, badge, transcript...
        assert too_faint(report) == [], report


def test_jupyterlab_light_and_dark(lab, saved, speech_wav, tmp_path):
    wav, _ = speech_wav
    check(themes_of(lab, saved, wav, tmp_path, "jupyterlab"))


def test_notebook_7_light_and_dark(notebook7, saved, speech_wav, tmp_path):
    wav, _ = speech_wav
    check(themes_of(notebook7, saved, wav, tmp_path, "notebook7"))
