"""Two JupyterHub users record at once through the widget, on one shared engine service.

Real parts, all on 127.0.0.1: the ``jupyterhub`` package with its own proxy
(configurable-http-proxy from npm, installed by ``scripts/setup.sh --test``), the local
process spawner, the dummy authenticator, and the offline engine as a hub-managed
service (``c.JupyterHub.services``) that every user's kernel reaches through
``SONIOX_WS_URL`` with a key of its own (``--keys-file``), as the README's "A shared engine on
JupyterHub" shows. Each user logs in with headless Chromium and a fake microphone, runs
the recorder cell in JupyterLab, and both record at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, free_port, run_cell
from tests.e2e.test_notebook_widget import WER_BOUND, wait_status
from tests.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / ".cache" / "hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"
KEYS_SECRET = "the-hub-test-secret-that-derives-every-users-key"
USERS = ("ada", "grace")

CONFIG = """\
import hashlib, hmac
c = get_config()  # noqa

# One engine key per user, derived from a secret the hub keeps (the README's recipe).
def speech_key(user):
    return "sk-" + hmac.new({secret!r}.encode(), user.encode(), hashlib.sha256).hexdigest()

with open("{workdir}/speech-keys", "w") as keys:
    keys.writelines(f"{{u}} {{speech_key(u)}}\\n" for u in {users!r})
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "hub-test-password"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r} + "/{{username}}"
c.Spawner.args = ["--allow-root", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.db_url = "sqlite:///{workdir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.services = [{{
    "name": "speech-engine",
    "command": [{python!r}, "-m", "soniox_widget.local", "--port", "{engine_port}",
                "--keys-file", "{workdir}/speech-keys", "--metrics", "--log-format", "json"],
    "environment": {{"HF_HUB_OFFLINE": "1"}},
}}]
c.Spawner.environment = {{
    "SONIOX_WS_URL": "ws://127.0.0.1:{engine_port}/transcribe-websocket",
    "SONIOX_API_KEY": lambda spawner: speech_key(spawner.user.name),
}}
"""

NOTEBOOK_CELLS = [
    "from soniox_widget import SonioxRecorder\nrec = SonioxRecorder()\nrec",
    "import json, pathlib\n"
    "pathlib.Path('result.json').write_text(json.dumps({'final_text': rec.final_text, "
    "'error': rec.error, 'engine': rec.engine_label}))",
]


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer; see {log}")
            time.sleep(0.5)


@pytest.fixture
def hub(tmp_path):
    if not PROXY.exists():
        pytest.skip("configurable-http-proxy is not installed (scripts/setup.sh --test)")
    pytest.importorskip("jupyterhub")
    home = tmp_path / "home"
    for user in USERS:
        (home / user).mkdir(parents=True)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, home / user / "record.ipynb")
    port, engine_port = free_port(), free_port()
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(CONFIG.format(
        port=port, hub_port=free_port(), api_port=free_port(), proxy=str(PROXY),
        home=str(home), workdir=tmp_path, python=sys.executable, engine_port=engine_port,
        secret=KEYS_SECRET, users=list(USERS)))
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "jupyterhub.log"
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                env={"PATH": env_path, "HOME": str(tmp_path)})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/hub/login", proc, log)
        wait_for_http(f"http://127.0.0.1:{engine_port}/healthz", proc, log)
        yield port, engine_port, home, log
    finally:
        terminate(proc)


def log_in_and_open(context, origin: str, user: str):
    """Log ``user`` in at ``origin`` and open their notebook in JupyterLab. Each user
    has an origin of their own (127.0.0.1, localhost): one browser, two cookie jars."""
    page = context.new_page()
    page.goto(f"{origin}/hub/login", timeout=60_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "hub-test-password")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"**/user/{user}/lab**", timeout=150_000)
    page.goto(f"{origin}/user/{user}/lab/tree/record.ipynb?reset", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.session &&"
        " w.sessionContext.session.kernel &&"
        " w.sessionContext.session.kernel.connectionStatus === 'connected'); }",
        timeout=90_000)
    return page


def test_two_hub_users_record_at_once_on_one_shared_engine(hub, speech_wav, tmp_path):
    from tests.speech import word_error_rate

    port, engine_port, home, _log = hub
    wav, spoken = speech_wav
    origins = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
    with chromium(wav, tmp=tmp_path) as context:
        pages = [log_in_and_open(context, origin, user)
                 for origin, user in zip(origins, USERS, strict=True)]
        for page in pages:
            run_cell(page, 0)
            page.wait_for_selector(".jp-OutputArea-output .soniox-recorder", timeout=60_000)
        for page in pages:  # both record at the same time
            page.click(".jp-OutputArea-output .soniox-button")
        for page in pages:
            wait_status(page, "recording")
        with urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/metrics",
                                    timeout=10) as response:
            during = response.read().decode()
        pages[0].wait_for_timeout(7000)  # ~4 s of speech, then silence
        for page in pages:
            page.click(".jp-OutputArea-output .soniox-button")
        shown = []
        for page in pages:
            wait_status(page, "idle", timeout_ms=90_000)
            shown.append(page.inner_text(".jp-OutputArea-output .soniox-final").strip())
            run_cell(page, 1)
    results = []
    for user in USERS:
        path = home / user / "result.json"
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        results.append(json.loads(path.read_text()))
    with urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/metrics",
                                timeout=10) as response:
        after = response.read().decode()

    assert "soniox_sessions_active 2.0" in during  # both at once, on the one engine
    assert 'soniox_sessions_total{reason="finished"} 2.0' in after
    # Each with a key of their own: the engine's session log names both users.
    ends = [json.loads(line[line.index("{"):]) for line in _log.read_text().splitlines()
            if '"session_end"' in line]
    assert sorted(e.get("user") for e in ends) == sorted(USERS), ends
    for text, result in zip(shown, results, strict=True):
        assert result["error"] == ""
        assert result["final_text"].strip() == text
        assert word_error_rate(spoken, text) <= WER_BOUND, text
