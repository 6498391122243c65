"""Servers under benchmark as child processes: started in a scratch directory, waited
for, stopped the bounded way; and the package as it was at a git revision, for a
before/after in one run."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class Processes:
    """Starts subprocesses in a scratch directory (so no .env is read) and stops them all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.cwd = tempfile.mkdtemp(prefix="bench_servers_")
        # Each server's stderr goes to a file: a pipe nobody reads fills up (64 kB) and
        # then blocks the server mid-session, as it did in a long engine benchmark.
        self._logs: dict[subprocess.Popen, Any] = {}

    def start(self, args: list[str], env: dict[str, str], port: int,
              root: Path = ROOT) -> subprocess.Popen:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SONIOX_")}
        full_env.update(env, PYTHONPATH=str(root))
        log = tempfile.TemporaryFile(dir=self.cwd)
        proc = subprocess.Popen(args, env=full_env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(proc)
        self._logs[proc] = log
        try:
            wait_for_port(port, proc)
        except RuntimeError:
            log.seek(0)
            err = log.read().decode(errors="replace")[-2000:]
            self.stop(proc)
            raise RuntimeError(f"could not start {args}:\n{err}") from None
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log = self._logs.pop(proc, None)
        if log is not None:
            log.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        with contextlib.suppress(OSError):
            os.rmdir(self.cwd)


def extract_package(rev: str, into: Path) -> None:
    """The ``soniox_widget`` package as it was at git revision ``rev``, under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev,
                              "soniox_widget"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
