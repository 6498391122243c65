"""A closed recorder is freed: nothing it registered keeps it, or a widget, alive.

Issue 22: each create → record → close cycle kept ~47 KB for good (anywidget connects a
closure over every instance to its file watcher; the Layout widget stayed registered).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.recorder_cycles import measure

ROOT = Path(__file__).resolve().parents[2]


def check(result: dict[str, float]) -> None:
    assert result["recorders_alive"] == 0, result
    assert result["widgets_added"] == 0, result
    assert result["bytes_per_cycle"] < 1024, result


async def test_200_recorder_cycles_leave_memory_and_registry_flat():
    check(await measure(200))


def test_200_recorder_cycles_in_a_real_kernel_leave_memory_and_registry_flat():
    """The same in an ipykernel (real comms to a front end that never answers)."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ANYWIDGET_HMR", None)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env,
                              extra_arguments=[], startup_timeout=60)
    try:
        assert km.kernel_spec is not None
        code = ("import json\nfrom tests.recorder_cycles import measure\n"
                "print('RESULT ' + json.dumps(await measure(200)))")
        reply = kc.execute_interactive(code, timeout=240, output_hook=_collect)
        assert reply["content"]["status"] == "ok", reply["content"]
        lines = [line for line in _OUT if line.startswith("RESULT ")]
        assert lines, _OUT
        check(json.loads(lines[-1][len("RESULT "):]))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


_OUT: list[str] = []


def _collect(msg: dict) -> None:
    if msg["msg_type"] == "stream":
        _OUT.extend(msg["content"]["text"].splitlines())
    elif msg["msg_type"] == "error":
        _OUT.append("\n".join(msg["content"]["traceback"]))


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX kernels only")


def test_a_recorder_whose_options_were_refused_is_freed_quietly(monkeypatch):
    """__init__ raised before the widget was made: closing it (ipywidgets does, when it
    is freed) must not fail on what was never set up, nor make a Layout widget."""
    import gc

    from ipywidgets.widgets.widget import _instances

    from soniox_widget import ConfigError, SonioxRecorder

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    before = len(_instances)
    for options in ({"bogus": 1}, {"timeslice_ms": 5}):
        with pytest.raises(ConfigError):
            SonioxRecorder(**options)
        gc.collect()
    assert unraisable == [] and len(_instances) == before
