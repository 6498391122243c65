"""A notebook that recorded from a file, executed by nbclient and saved with its widget
state: what a user has after "run all, save" (or papermill), for the tests that reopen
it without running it, export it to HTML, or show it in dark themes.

The kernel holds a fake API key (``SONIOX_API_KEY``), and the scripted engine's server
requires it, so the recording only works if the key was really in play; the saved file
must still not contain it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

FAKE_KEY = "sk-fake-saved-notebook-" + "5f0c1e2d3b4a69788796a5b4"
SPOKEN = "the saved notebook keeps what was said"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def cells(wav: Path) -> list[str]:
    return [
        "import os\n"
        "from soniox_widget import SonioxRecorder\n"
        "from soniox_widget.local import LocalSonioxServer, ScriptedEngine\n"
        f"srv = LocalSonioxServer(ScriptedEngine({SPOKEN!r}),"
        " api_key=os.environ['SONIOX_API_KEY']).start_in_thread()\n"
        "rec = SonioxRecorder(url=srv.url)  # the key comes from SONIOX_API_KEY\n"
        "rec",
        f"transcript = await rec.transcribe_file({str(wav)!r}, realtime=False)\n"
        "print(transcript.text)\n"
        "print('key sent in the header:', srv.sessions[-1].authorized_by_header)",
        # A second view. No rec.send_state() needed: the recording ran inside the cell
        # above (awaited), so nbclient saw every state update it made.
        "rec",
    ]


def execute_and_save(wav: Path, path: Path) -> Path:
    """Run the notebook in a fresh kernel (with the fake key) and save it with its
    widget state to ``path``."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells(wav)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    env = {k: v for k, v in os.environ.items() if k != "SONIOX_WS_URL"}
    env["SONIOX_API_KEY"] = FAKE_KEY
    client = NotebookClient(nb, timeout=180, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)
    nbformat.write(nb, path)
    return path


def trust(path: Path) -> None:
    """Sign the notebook, as JupyterLab does for notebooks it saved itself: an untrusted
    notebook's widget outputs are shown as their text/plain repr only."""
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(path)], check=True,
                   capture_output=True, timeout=60)


def saved_texts(nb: nbformat.NotebookNode) -> list[str]:
    """The ``saved_transcript`` text of every SonioxRecorder model in the widget state."""
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    texts = []
    for model in state.values():
        saved = model.get("state", {}).get("saved_transcript")
        if saved is not None:
            texts.append(saved.get("text")
                         or "".join(s["text"] for s in saved.get("segments", [])))
    return texts


def export_html(saved: Path, tmp_path: Path) -> Path:
    """``jupyter nbconvert --to html`` of ``saved`` (its widget state embedded)."""
    target = tmp_path / "export.html"
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                    "--output", str(target.with_suffix("")), str(saved)],
                   check=True, capture_output=True, timeout=120)
    return target


# The HTML export loads require.js, the widgets' embed manager and anywidget from public
# CDNs. Tests stay on 127.0.0.1, so they serve local copies at those paths instead:
# anywidget's AMD module from the installed Python package (the same file its npm
# package publishes), the other two from a node_modules folder named here, made with
#   npm install --prefix DIR @jupyter-widgets/html-manager@1 requirejs@2
NODE_MODULES_ENV = "SONIOX_E2E_NODE_MODULES"


def serve_export_locally(page) -> list[str]:
    """Route ``page``'s requests: the export's scripts from local copies, anything else
    (MathJax) refused, so nothing leaves the machine. Returns the list of URLs asked for,
    filled as the page loads. Skips the test without the node_modules folder."""
    node_modules = Path(os.environ.get(NODE_MODULES_ENV, "/nonexistent"))
    require_js = node_modules / "requirejs" / "require.js"
    embed_js = node_modules / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js"
    if not (require_js.is_file() and embed_js.is_file()):
        pytest.skip(f"set {NODE_MODULES_ENV} to a node_modules with "
                    "@jupyter-widgets/html-manager@1 and requirejs@2")
    import anywidget

    anywidget_amd = Path(anywidget.__file__).parent / "nbextension" / "index.js"
    served = [(re.compile(r"/require(\.min)?\.js$"), require_js),
              (re.compile(r"/@jupyter-widgets/html-manager@[^/]*/dist/embed-amd\.js$"), embed_js),
              (re.compile(r"/anywidget@[^/]*/dist/index\.js$"), anywidget_amd)]
    asked: list[str] = []

    def local_only(route) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
            return
        asked.append(url)
        for pattern, path in served:
            if pattern.search(url.split("?")[0]):
                route.fulfill(path=str(path), content_type="text/javascript")
                return
        route.abort()

    page.route("**/*", local_only)
    return asked
