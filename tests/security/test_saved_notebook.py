"""A notebook run with the key, saved with its widget state, holds no trace of the key.

Executed for real with nbclient (a real kernel, the widget's comm, the local server
requiring the key), once recording fine and once against a server whose error echoes
the key; the saved file (outputs, widget state, metadata) is then searched.
"""

from __future__ import annotations

import nbformat
import pytest

SECRET = "sk-nb-4e1d7b9a2c6f8e0a3b5d"

CELLS = [
    "from soniox_widget import SonioxRecorder\n"
    "from soniox_widget.local import LocalSonioxServer, ScriptedEngine\n"
    "KEY = open('key.txt').read().strip()\n"
    "good = LocalSonioxServer(ScriptedEngine(bytes_per_word=100), api_key=KEY)"
    ".start_in_thread()\n"
    "leaky = LocalSonioxServer(ScriptedEngine(bytes_per_word=100, fail_after_bytes=300,\n"
    "    fail_code=400, fail_message='the key ' + KEY + ' is odd'), api_key=KEY)"
    ".start_in_thread()\n"
    "rec = SonioxRecorder(url=good.url, api_key=KEY)\n"
    "bad = SonioxRecorder(url=leaky.url, api_key=KEY)\n"
    "rec",
    "bad",
    "rec.feed(bytes(range(256)) * 10); rec.stop()\n"
    "bad.feed(bytes(range(256)) * 10); bad.stop()",
    "await rec.wait_until_idle(timeout=20)\n"
    "try:\n    await bad.wait_until_idle(timeout=20)\n"
    "except Exception as exc:\n    print('failed as expected:', exc)\n"
    "print(repr(rec), repr(bad), bad.error)",
    "rec.final_text, bad.status, bad.error",
]


@pytest.mark.timeout(180)
def test_a_saved_notebook_holds_no_key(tmp_path):
    from nbclient import NotebookClient

    (tmp_path / "key.txt").write_text(SECRET)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    saved = nbformat.writes(nb)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    text = "\n".join(str(o) for o in outputs)
    assert "failed as expected" in text and "400" in text  # the hostile path ran
    assert "the key *** is odd" in text  # the server echoed the key; it was masked
    widgets = nb.metadata.get("widgets", {})
    assert "soniox" in str(widgets).lower() or "anywidget" in str(widgets).lower(), \
        "the widget state was not saved: the scan would prove nothing"
    assert SECRET not in saved
