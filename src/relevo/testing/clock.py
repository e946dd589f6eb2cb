"""A manual clock for tests: time moves only when the test says so (`advance`).

An `in_memory` application runs on one (`app.clock`), so a test of a one-hour retry
policy takes no hour: `app.clock.advance(3600)` fires the wake-ups that came due.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable


class ManualTimer:
    """A wake-up of a manual clock; cancelled ones never fire."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Starts at the wall time; `advance(s)` moves it and fires the wake-ups due by then."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._timers: list[tuple[float, int, ManualTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing in due order every wake-up due by the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward (got {seconds})")
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                callback()
        self.now = target
