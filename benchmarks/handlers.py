"""Handlers the benchmarks name in YAML; a countdown tells when a drain is complete."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class Countdown:
    def __init__(self) -> None:
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def arm(self, count: int) -> asyncio.Future[None]:
        self.left = count
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def tick(self) -> None:
        self.left -= 1
        if self.left == 0 and self.done is not None:
            self.done.set_result(None)


countdown = Countdown()


async def noop(body: Any) -> None:
    countdown.tick()


def noop_sync(body: Any) -> None:
    countdown.done.get_loop().call_soon_threadsafe(countdown.tick)  # type: ignore[union-attr]


lateness: list[float] = []
"""Seconds from each message's due time (its body's "due") to its handler's start."""


async def record_lateness(body: Any) -> None:
    lateness.append(time.time() - body["due"])
    countdown.tick()
