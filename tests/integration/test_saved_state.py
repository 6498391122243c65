"""A notebook saved with its widget state keeps the transcript (reopened without a
kernel, or exported to HTML, the widget still shows what was said)."""

from __future__ import annotations

import json

import nbformat
import pytest

CELLS = [
    "from soniox_widget import SonioxRecorder\n"
    "from soniox_widget.local import LocalSonioxServer, ScriptedEngine\n"
    "srv = LocalSonioxServer(ScriptedEngine('hello from the saved notebook',"
    " bytes_per_word=100)).start_in_thread()\n"
    "rec = SonioxRecorder(url=srv.url)\nrec",
    "rec.feed(bytes(range(256)) * 4); rec.stop()",
    "await rec.wait_until_idle(timeout=20)\nprint(rec.final_text)\n"
    # JupyterLab saves the models it holds, updated by every message; nbclient only
    # records messages tied to the running cell, and the recording's updates are tied
    # to the cell that started it. Re-sending the state here gives nbclient what
    # JupyterLab would have.
    "rec.send_state()",
]


@pytest.mark.timeout(180)
def test_the_saved_widget_state_holds_the_transcript(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    saved = [m["state"]["saved_transcript"] for m in states.values()
             if "saved_transcript" in m.get("state", {})]
    assert len(saved) == 1
    text = "".join(s["text"] for s in saved[0]["segments"])
    assert text == "hello from the saved notebook"
    assert "hello from the saved notebook" in json.dumps(nb.cells[2]["outputs"])
