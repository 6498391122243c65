"""Create, record, close and drop recorders many times, and measure what stays behind.

Shared by the in-process test (ipywidgets' dummy comm) and the real-kernel test
(``jupyter_client``), which imports it inside the kernel.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref

AUDIO = bytes(range(256)) * 4


async def measure(cycles: int = 200, warmup: int = 20) -> dict[str, float]:
    """Registry entries and memory kept per cycle, after ``warmup`` cycles have filled
    every cache (traitlets', the logging module's)."""
    from ipywidgets.widgets.widget import _instances

    from soniox_widget import SonioxRecorder
    from soniox_widget.local import LocalSonioxServer, ScriptedEngine

    alive: weakref.WeakSet = weakref.WeakSet()
    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=100)) as server:

        async def cycle() -> None:
            rec = SonioxRecorder(url=server.url)
            alive.add(rec)
            rec.on_audio(lambda data: None)
            rec.on_utterance(lambda utterance: None)
            rec.feed(AUDIO)
            rec.stop()
            await rec.wait_until_idle(timeout=10)
            assert rec.final_text, "the recording heard nothing: the cycle proves nothing"
            rec.close()
            server.sessions.clear()  # the test server's own record of each session

        for _ in range(warmup):
            await cycle()
        await settle()
        widgets_before = len(_instances)
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(cycles):
                await cycle()
            await settle()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    diff = after.compare_to(before, "lineno")
    kept = sum(d.size_diff for d in diff)
    return {"widgets_added": len(_instances) - widgets_before,
            "recorders_alive": len(alive),
            "bytes_per_cycle": kept / cycles,
            "largest": [str(d) for d in diff[:5]]}


async def settle() -> None:
    """Let a kernel's output thread send what is queued (a measure once caught 1.8 MB
    of comm messages in flight on a loaded machine), then collect."""
    await asyncio.sleep(1.0)
    gc.collect()
