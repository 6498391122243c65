"""Stress: 500 closes raced against replies arriving, none may hang.

A stand-in floods small replies after the start message; each round opens an
``UpstreamSession``, waits until it is connected, lets a few replies in (0 to 4 ms) and
closes it. A close that has not returned within 5 s hung. A cancellation swallowed by
``asyncio.wait_for`` (Python < 3.12: the inner ``recv()`` finished just as the task was
cancelled) shows up here: the session keeps reading the flood and ``aclose()`` never returns.
"""

from __future__ import annotations

import asyncio

from soniox_widget import UpstreamSession
from tests import standin

ROUNDS = 500
CLOSE_LIMIT = 5.0  # seconds; far above a normal close (~1 ms)
# Large enough that a session which ignored its cancellation is still reading the flood
# when CLOSE_LIMIT runs out; a stuck round sets ``stop`` so the flood ends at once.
FLOOD_LIMIT = 1_000_000
# A hung round costs ~10 s (the limit, then the stuck session reading the backlog); stop
# after this many so a broken close fails in well under a minute instead of an hour.
MAX_HANGS = 3


async def test_500_closes_racing_replies_never_hang(no_task_leaks):
    stop = asyncio.Event()
    hung: list[int] = []
    rounds = 0
    async with standin.StandIn(standin.floods_replies(FLOOD_LIMIT, stop)) as server:
        for i in range(ROUNDS):
            rounds += 1
            session = UpstreamSession(url=server.url, connect_timeout=5)
            session.start()
            await asyncio.wait_for(session.wait_connected(), 5)
            await asyncio.sleep((i % 5) * 0.001)
            # asyncio.wait, not wait_for: a close that swallows its own cancellation
            # would make wait_for return normally after the timeout on Python 3.11.
            closing = asyncio.ensure_future(session.aclose())
            done, _ = await asyncio.wait({closing}, timeout=CLOSE_LIMIT)
            if not done:
                hung.append(i)
                stop.set()  # end the flood: the server closes, the stuck session ends
                await asyncio.wait({closing}, timeout=CLOSE_LIMIT + 5)
                stop.clear()
            if not closing.done():  # still stuck: give up on it, the test fails anyway
                closing.cancel()
                await asyncio.wait({closing}, timeout=CLOSE_LIMIT)
            elif not closing.cancelled():
                closing.result()  # aclose() itself must not raise
            if len(hung) >= MAX_HANGS:
                break
        assert server.connections == rounds
    stopped = f", stopped after {MAX_HANGS} hangs" if len(hung) >= MAX_HANGS else ""
    assert not hung, f"{len(hung)} of {rounds} closes hung (rounds {hung}{stopped})"
    await no_task_leaks()
