"""Real parts for end-to-end tests: a JupyterLab server and headless Debian Chromium.

Chromium gets a fake microphone fed from a WAV made with espeak-ng. Nothing here
talks to anything but 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from tests.processes import terminate

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.browser


def _need(tool: str) -> None:
    if not (shutil.which(tool) or Path(tool).exists()):
        pytest.skip(f"{tool} is not installed (scripts/setup.sh --test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(site: Path) -> Iterator[int]:
    """Static files from ``site`` on 127.0.0.1 (a free port, yielded), quietly, on a thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class Lab:
    """A running Jupyter server (JupyterLab, or Notebook 7) with a scratch root folder."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen,
                 app: str = "lab") -> None:
        self.root, self.port, self.token, self.proc = root, port, token, proc
        self.app = app

    def notebook_path(self, name: str) -> str:
        """Where the app opens a notebook: /lab/tree/... or Notebook 7's /notebooks/..."""
        return f"/lab/tree/{name}?reset" if self.app == "lab" else f"/notebooks/{name}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def write_notebook(self, name: str, cells: list[str]) -> str:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, self.root / name)
        return name


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[Lab]:
    with jupyter_server(tmp_path_factory.mktemp("lab"), "lab") as server:
        yield server


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory) -> Iterator[Lab]:
    """Jupyter Notebook 7, the other front end built on the same widget manager."""
    pytest.importorskip("notebook", minversion="7",
                        reason="Notebook 7 is not installed (the [test] extra has it)")
    with jupyter_server(tmp_path_factory.mktemp("nb7"), "notebook") as server:
        yield server


@contextlib.contextmanager
def jupyter_server(root: Path, app: str) -> Iterator[Lab]:
    """Start ``jupyter lab`` or ``jupyter notebook`` on 127.0.0.1 and wait until it answers."""
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env["JUPYTER_CONFIG_DIR"] = str(root / ".jupyter-config")  # no user settings leak in
    app_class = "LabApp" if app == "lab" else "JupyterNotebookApp"
    quiet = ["--LabApp.extension_manager=readonly", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = ARTIFACTS / f"jupyter-{app}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--no-browser", f"--port={port}",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
             "--ServerApp.password=", f"--ServerApp.root_dir={root}",
             f"--{app_class}.expose_app_in_browser=True", "--ServerApp.open_browser=False",
             "--ServerApp.allow_root=True", *(quiet if app == "lab" else [])],
            cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
        server = Lab(root, port, token, proc, app)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(server.url("/api/status"), timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"jupyter {app} did not start; see {log}")
                time.sleep(0.5)
        try:
            yield server
        finally:
            terminate(proc)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> tuple[Path, str]:
    """The fake microphone's speech: a WAV made by espeak-ng from a known sentence."""
    _need("espeak-ng")
    from tests.speech import make_speech_wav

    text = "Please send the report to my office before the meeting tomorrow."
    path = make_speech_wav(text, tmp_path_factory.mktemp("mic") / "speech.wav",
                           lead_silence_s=0.3, tail_silence_s=6.0)
    return path, text


@contextlib.contextmanager
def chromium(wav: Path, *, fake_ui: bool = True, tmp: Path, extra_args: tuple[str, ...] = ()):
    """A headless Chromium with a fake microphone; fake_ui=False leaves the permission
    to the browser context (Playwright denies it unless granted); ``extra_args`` adds
    command-line flags (e.g. host-resolver rules)."""
    _need(CHROMIUM)
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", *extra_args]
    if fake_ui:
        args.append("--use-fake-ui-for-media-stream")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp / f"profile-{secrets.token_hex(4)}"), executable_path=CHROMIUM,
            headless=True, args=args, viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def open_notebook(context, lab: Lab, name: str):
    page = context.new_page()
    page.on("console", lambda m: _console.append(f"{m.type}: {m.text}"))
    page.goto(lab.url(lab.notebook_path(name)), timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # Wait for the kernel to be ready before running anything.
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.session &&"
        " w.sessionContext.session.kernel &&"
        " w.sessionContext.session.kernel.connectionStatus === 'connected'); }",
        timeout=90_000,
    )
    return page


_console: list[str] = []


def run_cell(page, index: int, timeout_ms: int = 120_000) -> None:
    """Run cell ``index`` and wait until the kernel is idle again."""
    page.evaluate(
        """async (index) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = index;
            await window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )
    page.wait_for_function(
        """() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
               .status === 'idle'""",
        timeout=timeout_ms,
    )


def read_result(lab: Lab, name: str, timeout_s: float = 30) -> dict:
    path = lab.root / name
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the notebook did not write {name}; console: {_console[-20:]}")
        time.sleep(0.2)
    return json.loads(path.read_text())


@pytest.fixture
def scripted() -> Iterator[tuple[LocalSonioxServer, ScriptedEngine]]:
    """A scripted engine on 127.0.0.1 (its own thread): exact words for the bytes it got."""
    engine = ScriptedEngine(bytes_per_word=1500)
    server = LocalSonioxServer(engine, record_audio=True).start_in_thread()
    try:
        yield server, engine
    finally:
        server.stop_thread()
