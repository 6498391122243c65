"""Choosing the input device (issue 13): after permission the widget lists the inputs by
name, the choice is a synced trait (``rec.device``, ``rec.device_id``) kept for the next
recording and shown by every view, and a chosen input that is gone falls back to the
default one with a notice. Chromium's fake capture device is the only input here.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, open_notebook, read_result, run_cell
from tests.e2e.test_notebook_widget import SCRIPTED_RECORDER_CELL

pytestmark = pytest.mark.browser

OUT = ".jp-OutputArea-output"
WIDGET = f"{OUT} .soniox-recorder"
REPORT = ("import json\njson.dump({{'device': rec.device, 'device_id': rec.device_id,"
          " 'status': rec.status, 'error': rec.error, 'chunks': rec.audio_stats['chunks']}},"
          " open('{name}', 'w'))")


def _record_briefly(page, view: int = 0) -> None:
    widget = page.locator(WIDGET).nth(view)
    widget.locator(".soniox-button").click()
    page.wait_for_function(
        "(i) => document.querySelectorAll('.jp-OutputArea-output .soniox-recorder')[i]"
        ".dataset.chunksSent > 2", arg=view, timeout=60_000)
    widget.locator(".soniox-button").click()
    page.wait_for_selector(f"{WIDGET}[data-status='idle']", timeout=60_000)


def test_the_input_list_and_the_choice_reach_python(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("device.ipynb", [
        SCRIPTED_RECORDER_CELL,
        REPORT.format(name="device.json"),
        "rec",  # a second view of the same recorder
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        page.wait_for_selector(WIDGET, timeout=60_000)
        _record_briefly(page)  # permission given: the browser now names its inputs
        page.wait_for_selector(f"{WIDGET} .soniox-device-row:not([hidden])", timeout=10_000)
        options = page.eval_on_selector_all(
            f"{WIDGET} .soniox-device option", "os => os.map(o => [o.value, o.textContent])")
        inputs = page.evaluate(
            "async () => (await navigator.mediaDevices.enumerateDevices())"
            ".filter(d => d.kind === 'audioinput').map(d => [d.deviceId, d.label])")
        assert options[0] == ["", "Default microphone"]
        assert options[1:] == inputs and len(inputs) >= 1, (options, inputs)
        chosen_id, chosen_label = inputs[-1]
        page.select_option(f"{WIDGET} .soniox-device", chosen_id)
        run_cell(page, 1)
        result = read_result(lab, "device.json")
        assert (result["device"], result["device_id"]) == (chosen_label, chosen_id)
        # Another view of the recorder shows the same choice, and the next recording
        # (from that view) records from it.
        run_cell(page, 2)
        page.wait_for_function(
            "(id) => { const s = document.querySelectorAll('.jp-OutputArea-output "
            ".soniox-device'); return s.length === 2 && s[1].value === id; }",
            arg=chosen_id, timeout=20_000)
        _record_briefly(page, view=1)
        assert page.locator(WIDGET).nth(1).locator(".soniox-notice").is_hidden()
        page.locator(WIDGET).first.screenshot(path=str(ARTIFACTS / "device-choice.png"))
        (lab.root / "device.json").unlink()
        run_cell(page, 1)
        result = read_result(lab, "device.json")
    assert result["status"] == "idle" and result["error"] == ""
    assert result["chunks"] > 2 and result["device_id"] == chosen_id


def test_a_chosen_input_that_is_gone_falls_back_with_a_notice(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("device-gone.ipynb", [
        SCRIPTED_RECORDER_CELL + "\nrec.device = 'USB Headset'\nrec.device_id = 'no-such-id'\nrec",
        REPORT.format(name="device-gone.json"),
    ])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        page.wait_for_selector(WIDGET, timeout=60_000)
        _record_briefly(page)
        notice = page.inner_text(f"{WIDGET} .soniox-notice")
        run_cell(page, 1)
        result = read_result(lab, "device-gone.json")
    assert '"USB Headset" is not available; recording from the default input' in notice
    assert result["status"] == "idle" and result["error"] == "" and result["chunks"] > 2
