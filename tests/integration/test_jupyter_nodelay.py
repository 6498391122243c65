"""A real Jupyter server sends kernel messages with TCP_NODELAY on (issue 11).

Each test starts a Jupyter server (bare, JupyterLab, or Notebook 7) as installed, opens
a kernel WebSocket like a browser does, and reads TCP_NODELAY on the *server's* end of
that very connection: the socket is found through /proc (its local and remote ports) and
duplicated out of the server process with pidfd_getfd, so nothing in the server is
changed to look. Without the extension (or with it disabled the documented way) the
option is off, which is what makes widget updates wait for the browser's delayed ACK.
"""

from __future__ import annotations

import contextlib
import ctypes
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

from soniox_widget.jupyter_nodelay import EXTENSION_NAME
from tests.processes import terminate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the server's socket through /proc (Linux)")

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


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
def jupyter(tmp: Path, module: str, *, disable: bool = False) -> Iterator[Server]:
    """``python -m <module>`` (jupyter_server, jupyterlab, notebook) on 127.0.0.1 with the
    configuration installed in this environment; ``disable`` turns the extension off in
    a scratch user config (the installed config is not touched)."""
    config_dir = tmp / "jupyter-config"
    config_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    if disable:  # what a user writes in ~/.jupyter/jupyter_server_config.json
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(
            {"ServerApp": {"jpserver_extensions": {EXTENSION_NAME: False}}}))
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


def server_socket_nodelay(pid: int, server_port: int, client_port: int) -> bool:
    """TCP_NODELAY of the socket in process ``pid`` that is the server's end of the TCP
    connection 127.0.0.1:client_port -> :server_port."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == server_port \
                        and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    inode = fields[9]
    assert inode is not None, "the server's end of the connection is not in /proc/net/tcp"
    target = f"socket:[{inode}]"
    fd = next((int(name) for name in os.listdir(f"/proc/{pid}/fd")
               if _readlink(f"/proc/{pid}/fd/{name}") == target), None)
    assert fd is not None, f"process {pid} holds no {target}"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if copy < 0:
        pytest.skip(f"pidfd_getfd is not allowed here (errno {ctypes.get_errno()})")
    with socket.socket(fileno=copy) as sock:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def kernel_socket_nodelay(server: Server) -> bool:
    """Start a kernel, connect to its channels like a browser, read the server's option."""
    from websockets.sync.client import connect

    kernel = server.api("POST", "/api/kernels")
    session = uuid.uuid4().hex
    url = (f"ws://127.0.0.1:{server.port}/api/kernels/{kernel['id']}/channels"
           f"?session_id={session}&token={server.token}")
    try:
        with connect(url, open_timeout=30, max_size=None) as ws:
            reply = kernel_info(ws, session)
            assert reply["content"]["status"] == "ok"
            client_port = ws.socket.getsockname()[1]
            return server_socket_nodelay(server.proc.pid, server.port, client_port)
    finally:
        server.api("DELETE", f"/api/kernels/{kernel['id']}")


@pytest.mark.parametrize("module", ["jupyter_server", "jupyterlab", "notebook"])
def test_kernel_websocket_has_nodelay_in_every_jupyter_app(module, tmp_path):
    """Enabled by the config file installed with the package: no flag is passed."""
    pytest.importorskip(module)
    with jupyter(tmp_path, module) as server:
        assert kernel_socket_nodelay(server) is True
    assert f"{EXTENSION_NAME}: TCP_NODELAY on" in server.log.read_text()


def test_disabled_extension_leaves_nagle_on(tmp_path):
    """Turned off in the user's config, Nagle is on again: what the extension changes."""
    with jupyter(tmp_path, "jupyter_server", disable=True) as server:
        assert kernel_socket_nodelay(server) is False
    assert "TCP_NODELAY on" not in server.log.read_text()
