"""The widget in a notebook served by standalone Voila (issue 13: the host table).

Voila runs the notebook in its own kernel when the page opens and shows only the
outputs, through its own Tornado application (not a jupyter_server extension app).
The notebook's recorder goes to a scripted engine in this process, whose words are a
function of the bytes it got, so the page and the engine must agree exactly.

Whether our TCP_NODELAY server extension (soniox_widget.jupyter_nodelay) applies under
standalone Voila is recorded, not asserted: Voila builds its own web application and
loads no jupyter_server extensions, so the answer goes to
test-artifacts/voila-nodelay.txt for the README's host table.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, free_port
from tests.processes import terminate

pytest.importorskip("voila", reason="voila is not installed (the [test] extra has it)")

pytestmark = pytest.mark.browser

WIDGET = ".soniox-recorder"
NODELAY_ON = "TCP_NODELAY on for kernel WebSockets"  # soniox_widget.jupyter_nodelay's log


def write_notebook(path: Path, ws_url: str) -> None:
    """A notebook whose only output is a recorder pointed at ``ws_url``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from soniox_widget import SonioxRecorder\n"
        f"recorder = SonioxRecorder(url={ws_url!r})\n"
        "recorder")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Bounded wait until something listens on ``port`` (a GET would start a kernel)."""
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"voila did not start; see {log}")
        time.sleep(0.3)


@contextlib.contextmanager
def voila_server(notebook: Path) -> Iterator[tuple[str, Path]]:
    """``voila NB`` on 127.0.0.1 with a scratch config dir; yields (page URL, log path)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env["JUPYTER_CONFIG_DIR"] = str(notebook.parent / ".jupyter-config")
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "voila.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", notebook.name, "--no-browser",
             f"--port={port}", "--Voila.ip=127.0.0.1"],
            cwd=notebook.parent, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, proc, log)
            yield f"http://127.0.0.1:{port}/", log
        finally:
            terminate(proc)


def test_voila_records_and_shows_what_the_engine_said(scripted, speech_wav, tmp_path):
    server, engine = scripted
    wav, _ = speech_wav
    notebook = tmp_path / "voila_recorder.ipynb"
    write_notebook(notebook, server.url)
    with voila_server(notebook) as (url, log), chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        page.goto(url, timeout=90_000)
        root = page.wait_for_selector(f"{WIDGET}[data-status='idle']", timeout=90_000)
        assert server.sessions == []  # nothing is sent before Record

        page.click(f"{WIDGET} .soniox-button")
        page.wait_for_selector(f"{WIDGET}[data-status='recording']", timeout=60_000)
        page.wait_for_function("([el, n]) => Number(el.dataset.bytesSent || 0) >= n",
                               arg=[root, 6000], timeout=30_000)
        # Words appear while recording, before Stop.
        page.wait_for_function(
            "(el) => (el.querySelector('.soniox-final').textContent +"
            " el.querySelector('.soniox-nonfinal').textContent).trim().length > 0",
            arg=root, timeout=30_000)
        page.click(f"{WIDGET} .soniox-button")
        page.wait_for_selector(f"{WIDGET}[data-status='idle']", timeout=60_000)

        expected = engine.text_for(bytes(server.sessions[-1].audio))
        shown = " ".join(page.inner_text(f"{WIDGET} .soniox-final").split())
        assert len(server.sessions) == 1
        assert shown == expected != ""
        page.screenshot(path=str(ARTIFACTS / "voila.png"), full_page=True)

    # Report only (see the module docstring): did the server extension load?
    applied = NODELAY_ON in log.read_text(errors="replace")
    (ARTIFACTS / "voila-nodelay.txt").write_text(
        f"TCP_NODELAY extension applied under standalone voila: {applied}\n")
