"""Exponential backoff with jitter, capped: the one backoff of relevo.

Used for restarting failed entries, for the broker drivers' reconnect loops and for
the retry policy of queues.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_delay_s: float = 1.0
    max_delay_s: float = 90.0
    factor: float = 2.0
    jitter: float = 0.1  # +/- this fraction of the delay
    max_attempts: int = 0  # 0 = never give up

    def delay_s(self, attempt: int, rand: random.Random | None = None) -> float:
        """The wait before restart number `attempt` (1-based)."""
        base = min(self.max_delay_s, self.initial_delay_s * self.factor ** (attempt - 1))
        spread = base * self.jitter
        return max(0.0, base + (rand or random).uniform(-spread, spread))

    def gives_up(self, attempt: int) -> bool:
        return self.max_attempts > 0 and attempt > self.max_attempts
