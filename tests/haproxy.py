"""Debian's HAProxy in front of server processes, on 127.0.0.1, for the service tests.

:class:`HAProxy` writes a configuration like the README's ("Running for many users"):
``/readyz`` health checks every 200 ms, WebSocket tunnel timeouts, ``leastconn``, and
a connection that fails (or a 503 from a draining replica) retried on another server.
It runs ``haproxy -db`` in the foreground as a child of the test and asks its admin
socket which servers are up. :class:`ServerProcess` runs one ``python -m
soniox_widget.local`` or ``soniox-proxy`` and reads its JSON session log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.processes import terminate

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 512

defaults
    mode http
    option redispatch 1
    retries 3
    retry-on conn-failure empty-response 503
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-request 10s
    timeout queue 10s

frontend speech
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
{servers}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def haproxy_available() -> bool:
    return os.access(HAPROXY, os.X_OK)


class HAProxy:
    """One HAProxy process balancing ``servers`` (name → port); see the module docstring.

    Example::

        async with HAProxy({"e1": 9001, "e2": 9002}, tmp_path) as balancer:
            await balancer.wait_status({"e1": "UP", "e2": "UP"})
            url = balancer.url("/transcribe-websocket")
    """

    def __init__(self, servers: dict[str, int], workdir: Path) -> None:
        self.servers = servers
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self._proc: subprocess.Popen | None = None

    def url(self, path: str = "/transcribe-websocket") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> HAProxy:
        await asyncio.to_thread(self._start)
        return self

    def _start(self) -> None:
        lines = "\n".join(f"    server {name} 127.0.0.1:{port} check"
                          for name, port in self.servers.items())
        self.config.write_text(CONFIG.format(socket=self.socket, port=self.port,
                                             servers=lines))
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)],
                                          stdout=log, stderr=subprocess.STDOUT)

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            await asyncio.to_thread(terminate, self._proc)

    async def status(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it now ("UP", "DOWN", "MAINT", ...)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(self.socket)), 5)
        try:
            writer.write(b"show stat\n")
            await writer.drain()
            text = (await asyncio.wait_for(reader.read(), 5)).decode()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        header, *rows = [line for line in text.splitlines() if line]
        columns = header.lstrip("# ").split(",")
        at_name, at_status = columns.index("svname"), columns.index("status")
        out = {}
        for row in rows:
            cells = row.split(",")
            if cells[at_name] in self.servers:
                out[cells[at_name]] = cells[at_status].split(" ")[0]
        return out

    async def wait_status(self, wanted: dict[str, str], timeout: float = 30.0) -> None:
        """Until every named server has the wanted status (bounded; fails with the last)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: dict[str, str] = {}
        while loop.time() < deadline:
            with contextlib.suppress(OSError):  # the socket appears once HAProxy is up
                seen = await self.status()
                if all(seen.get(name) == status for name, status in wanted.items()):
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"HAProxy servers {seen}, expected {wanted}")


class ServerProcess:
    """``python -m soniox_widget.local`` or ``soniox-proxy`` as a child process.

    ``args`` follow the module name; the server's JSON log lines go to a file, read by
    :meth:`events`. The banner's URL gives the port (``--port 0`` picks one).
    """

    def __init__(self, module: str, args: list[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.module = module
        self.args = args
        self.log = log
        self.env = env
        self.port = 0
        self._proc: subprocess.Popen | None = None

    async def start(self) -> ServerProcess:
        banner = await asyncio.wait_for(asyncio.to_thread(self._spawn), 120)
        found = re.search(r"127\.0\.0\.1:(\d+)", banner)
        assert found, f"no address in the banner {banner!r}; log: {self.log.read_text()}"
        self.port = int(found.group(1))
        return self

    def _spawn(self) -> str:
        """Start the process; returns its banner line (blocks: run in a thread)."""
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args, "--log-format", "json"],
                stdout=subprocess.PIPE, stderr=log, env=self.env, text=True)
        assert self._proc.stdout is not None
        return self._proc.stdout.readline()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its sockets reset."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)

    def drain(self) -> None:
        """SIGTERM: the server drains (``--drain-seconds``), then exits."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 60.0) -> int:
        assert self._proc is not None
        return await asyncio.to_thread(self._proc.wait, timeout)

    async def stop(self) -> None:
        if self._proc is not None:
            await asyncio.to_thread(terminate, self._proc)
            if self._proc.stdout is not None:
                self._proc.stdout.close()

    def events(self) -> list[dict]:
        """The JSON log lines with an ``event`` (session_start, session_end, drain...)."""
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "event" in record:
                    out.append(record)
        return out
