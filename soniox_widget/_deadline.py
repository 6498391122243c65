"""One timer for a changing set of deadlines, at no cost per message.

Deadlines here mostly move *later* on every message (a keepalive is due five seconds
after the last frame sent; a view is gone ten seconds after its last message).
Re-arming a timer for each message would cost a timer operation per frame, and
wrapping a receive in ``asyncio.wait_for`` can swallow a cancel on Python 3.10/3.11.
So one timer sits at the earliest due time; it is moved only when a deadline comes
*earlier*, and when it fires its owner checks what is really due and arms it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    """Calls ``on_fire(now, due)`` at (or after) ``next_due()``; ``arm()`` after changes.

    ``next_due`` returns the earliest time something may be due, or None. ``on_fire``
    gets the time it was scheduled for too, so it can tell a late firing (the loop was
    blocked) from a timely one; it re-arms by calling :meth:`arm`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, next_due: Callable[[], float | None],
                 on_fire: Callable[[float, float], None]) -> None:
        self._loop = loop
        self._next_due = next_due
        self._on_fire = on_fire
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0

    def arm(self) -> None:
        due = self._next_due()
        if due is None or (self._timer is not None and self._at <= due):
            return
        self.cancel()
        self._at = due
        self._timer = self._loop.call_at(due, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._on_fire(self._loop.time(), self._at)
