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
import os
import socket
import sys
import uuid

import pytest

from soniox_widget.jupyter_nodelay import EXTENSION_NAME
from tests.jupyter_server import Server, jupyter, kernel_info

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the server's socket through /proc (Linux)")

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


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
    with jupyter(tmp_path, "jupyter_server", disable=(EXTENSION_NAME,)) as server:
        assert kernel_socket_nodelay(server) is False
    assert "TCP_NODELAY on" not in server.log.read_text()
