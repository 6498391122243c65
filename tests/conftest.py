"""Shared fixtures: real servers on 127.0.0.1, and a check that no task leaks."""

from __future__ import annotations

import asyncio
import os

import pytest

from soniox_widget.local import LocalSonioxServer, ScriptedEngine


@pytest.fixture(autouse=True)
def _no_real_key_leaks_into_tests(monkeypatch, request, tmp_path):
    """Tests run as if no key were set, unless they are marked as real-service tests."""
    if request.node.get_closest_marker("soniox") is None:
        monkeypatch.delenv("SONIOX_API_KEY", raising=False)
        monkeypatch.delenv("SONIOX_WS_URL", raising=False)
        monkeypatch.chdir(tmp_path)  # so no stray .env file is found


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(bytes_per_word=100)


@pytest.fixture
async def local_server(engine):
    async with LocalSonioxServer(engine, record_audio=True) as server:
        yield server


async def assert_no_tasks_left(timeout: float = 2.0) -> None:
    """Every task but the test's own must be gone (bounded wait for stragglers)."""
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left or loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert not left, f"tasks left running: {left}"


@pytest.fixture
def no_task_leaks():
    return assert_no_tasks_left


def real_key() -> str | None:
    return os.environ.get("SONIOX_API_KEY") or None
