"""A real Jupyter server (bare, JupyterLab or Notebook 7) for tests of this package's
server extensions, started as installed, on 127.0.0.1, and stopped whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import terminate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, token: str, log: Path) -> None:
        self.proc, self.port, self.token, self.log = proc, port, token, log

    def api(self, method: str, path: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=b"{}" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else {}


@contextlib.contextmanager
def jupyter(tmp: Path, module: str, *, disable: tuple[str, ...] = ()) -> Iterator[Server]:
    """``python -m <module>`` (jupyter_server, jupyterlab, notebook) on 127.0.0.1 with the
    configuration installed in this environment; ``disable`` turns these server
    extensions off in a scratch user config (the installed config is not touched)."""
    config_dir = tmp / "jupyter-config"
    config_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    if disable:  # what a user writes in ~/.jupyter/jupyter_server_config.json
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": dict.fromkeys(disable, False)}}))
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp / f"{module}.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--no-browser", f"--port={port}",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={tmp}", "--ServerApp.allow_root=True"],
            cwd=tmp, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(proc, port, token, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{module} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield server
    finally:
        terminate(proc)


def kernel_info(ws, session: str) -> dict:
    """Ask for kernel_info over the channels WebSocket and wait for the reply: once it is
    there, the server has run the handler's open() and serves this connection."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": session,
                   "username": "test", "date": "2026-01-01T00:00:00Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"}))
    deadline = time.monotonic() + 60
    for _ in range(1000):  # a few status/iopub messages come first
        left = deadline - time.monotonic()
        if left <= 0:
            break
        msg = json.loads(ws.recv(timeout=left))
        if msg.get("parent_header", {}).get("msg_id") == msg_id \
                and msg["header"]["msg_type"] == "kernel_info_reply":
            return msg
    pytest.fail("no kernel_info_reply within 60 s")


