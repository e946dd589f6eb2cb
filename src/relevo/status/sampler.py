"""Samples of a running application: per consumer rates and in flight, per queue counts.

Consumer counts come from the worker pools (two integers per pool, kept whatever the
configuration); queue counts from the drivers, one `info()` per running queue per sample.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol


class Observed(Protocol):
    """What the sampler reads of an application (`relevo.App`)."""

    queues: Any

    def activity(self) -> dict[str, dict[str, Any]]: ...

    def status(self, entry_id: str) -> str: ...

    async def info(self, queue_id: str) -> dict[str, int]: ...


@dataclass(frozen=True)
class ConsumerRow:
    consumer: str
    queue: str
    status: str
    handled: int  # since the consumer last started
    per_s: float
    failed_per_s: float
    in_flight: int


@dataclass(frozen=True)
class QueueRow:
    queue: str
    ready: int | None  # None: not running, or its driver did not answer
    in_flight: int | None
    delayed: int | None


@dataclass(frozen=True)
class Sample:
    consumers: list[ConsumerRow]
    queues: list[QueueRow]
    seconds: float  # covered by the rates

    @property
    def per_s(self) -> float:
        return sum(row.per_s for row in self.consumers)

    @property
    def failed_per_s(self) -> float:
        return sum(row.failed_per_s for row in self.consumers)

    @property
    def in_flight(self) -> int:
        return sum(row.in_flight for row in self.consumers)


class Sampler:
    """Each `sample()` gives the rates since the previous one."""

    def __init__(self, app: Observed) -> None:
        self.app = app
        self._last: dict[str, tuple[int, int]] = {}
        self._at = time.monotonic()

    async def sample(self) -> Sample:
        now = time.monotonic()
        seconds = max(now - self._at, 1e-9)
        self._at = now
        consumers = []
        counts: dict[str, tuple[int, int]] = {}
        for consumer, a in sorted(self.app.activity().items()):
            handled, failed = a["handled"], a["failed"]
            before_handled, before_failed = self._last.get(consumer, (0, 0))
            if handled < before_handled:  # counts began again
                before_handled = 0
            if failed < before_failed:  # restarted: its failures count from 0
                before_failed = 0
            counts[consumer] = (handled, failed)
            consumers.append(ConsumerRow(
                consumer, a["queue"], a["status"], handled,
                (handled - before_handled) / seconds, (failed - before_failed) / seconds,
                a["in_flight"],
            ))
        self._last = counts
        return Sample(consumers, await self._queues(), seconds)

    async def _queues(self) -> list[QueueRow]:
        ids = sorted(self.app.queues)
        running = [q for q in ids if self.app.status(q) == "running"]
        found = await asyncio.gather(*(self.app.info(q) for q in running), return_exceptions=True)
        by_id = {q: f for q, f in zip(running, found, strict=True) if isinstance(f, dict)}
        rows = []
        for queue in ids:
            info = by_id.get(queue)
            if info is None:
                rows.append(QueueRow(queue, None, None, None))
            else:
                rows.append(QueueRow(queue, info["ready"], info["in_flight"],
                                     info.get("delayed", 0)))
        return rows
