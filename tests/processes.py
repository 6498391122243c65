"""Child processes of the tests (servers, notebooks hosts): ended the same bounded way."""

from __future__ import annotations

import subprocess


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, up to 15 s to exit, then SIGKILL: a test never waits on a stuck child."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
