"""A Recording declares every field it has (issue 21: the widget attached ``config`` and
``pcm_decoder`` to it from outside and read them back with ``getattr``)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

import soniox_widget
from soniox_widget import SonioxConfig, UpstreamSession
from soniox_widget.recording import Recording


async def test_nobody_can_attach_a_field_to_a_recording():
    upstream = UpstreamSession(SonioxConfig(), url="ws://127.0.0.1:9/transcribe-websocket")
    rec = Recording("s1", "python", upstream, config=SonioxConfig(), keep_audio=False,
                    on_reply=lambda reply: None, on_done=lambda rec: None)
    try:
        assert rec.config == SonioxConfig() and rec.stats()["chunks"] == 0
        with pytest.raises(AttributeError):
            rec.pcm_decoder = object()  # type: ignore[attr-defined]
    finally:
        rec.cancel()
        await asyncio.gather(rec.task, return_exceptions=True)
        await upstream.aclose()


def test_the_widget_reads_no_recording_field_with_getattr():
    source = (Path(soniox_widget.__file__).parent / "recorder.py").read_text("utf-8")
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr"]
    targets = [ast.unparse(call.args[0]) for call in calls]
    assert all(t == "self" for t in targets), targets
