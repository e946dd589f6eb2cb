"""Exceptions a handler raises to steer its delivery; they are control flow, not errors.

    raise relevo.Retry("30s")        # a failed attempt: redeliver no sooner than 30 s
    raise relevo.Reject("bad input")  # no more attempts: dead-letter it, or drop it

A `Retry` is logged at INFO, not as a failure.
"""

from __future__ import annotations

from relevo.durations import parse_duration_s


class Retry(Exception):
    """Redeliver no sooner than `after` (seconds or a duration string), whatever the
    queue's retry policy; counts as a failed attempt (`dead_letter.max_attempts`)."""

    def __init__(self, after: float | str, reason: str | None = None) -> None:
        self.after_s = parse_duration_s(after)
        self.reason = reason or f"retry in {self.after_s:g}s"
        super().__init__(self.reason)


class Reject(Exception):
    """No more attempts: to the queue's dead letter at once (reason in
    `x_dead_letter_reason`), or dropped and logged at ERROR without one."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
