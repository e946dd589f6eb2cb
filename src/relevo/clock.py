"""The time relevo schedules by: wall time (epoch seconds) and wake-ups at a given time.

Every due time (a delayed publish, a retry) is computed with `now()`, and the memory
driver wakes its delayed messages through `current().call_at`. Tests swap in a manual
clock with `use(clock)`: its `advance()` fires the wake-ups that came due, so delayed
messages of the memory driver are delivered without waiting. Broker drivers keep time
by the broker and wall clock, whatever clock is in use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from relevo.durations import parse_duration_s
from relevo.errors import PublishError, RelevoError


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Now, in epoch seconds."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` on the running event loop once `time()` reaches `when`."""


class SystemClock:
    """Wall time, and wake-ups as event loop timers."""

    def time(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, when - time.time()), callback)

    def advance(self, seconds: float) -> None:
        """Wall time cannot be moved: only a test's manual clock can."""
        raise RelevoError(
            "clock.advance() needs a manual clock: load the application with "
            "relevo.testing.in_memory(...) (this one keeps wall time)"
        )


_current: Clock = SystemClock()


def current() -> Clock:
    """The clock in use (a `SystemClock` unless a test swapped it)."""
    return _current


def use(clock: Clock) -> Clock:
    """Make `clock` the one in use; returns the previous one, to put back after.

    Memory drivers take the clock in use when they are created: swap it before
    building the app.
    """
    global _current
    previous, _current = _current, clock
    return previous


def now() -> float:
    """The current time of the clock in use, in epoch seconds."""
    return _current.time()


def due_time(delay: float | str | None = None, at: datetime | float | None = None) -> float | None:
    """The epoch time a publish with `delay` or `at` waits for; None for "now".

    `delay` is seconds or a duration string; `at` an aware datetime or epoch seconds
    (a time already past means now). PublishError for both at once, a negative delay,
    a naive datetime or anything else.
    """
    if delay is None and at is None:
        return None
    if delay is not None and at is not None:
        raise PublishError("give delay or at, not both")
    if delay is not None:
        try:
            seconds = parse_duration_s(delay)
        except ValueError as exc:
            raise PublishError(f"delay: {exc}") from None
        return now() + seconds if seconds > 0 else None
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise PublishError(
                f"at: {at.isoformat()} has no time zone; give an aware datetime "
                "(e.g. datetime.now(UTC) + timedelta(minutes=5))"
            )
        due = at.timestamp()
    elif isinstance(at, int | float) and not isinstance(at, bool):
        due = float(at)
    else:
        raise PublishError(f"at: expected an aware datetime or epoch seconds, got {at!r}")
    return due if due > now() else None
