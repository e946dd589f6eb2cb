"""Counts over time, kept in memory for the last hour, and the rates drawn from them.

A sampler reads every queue's counts each `sample_s` seconds; each queue keeps at most
an hour of samples. Rates come from a `RateSource`: `CountDeltaRates` derives the net
change per second from two samples a minute apart. A source that knows what was
published and processed (the `metrics.prometheus` figures) plugs in through the same
protocol and gives `published_per_s` and `processed_per_s` as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from relevo.dashboard.background import BackgroundLoop
from relevo.drivers.base import QueueStats

log = logging.getLogger("relevo.dashboard")

KEEP_S = 3600.0
RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # epoch seconds
    ready: int
    in_flight: int
    delayed: int

    @property
    def messages(self) -> int:
        return self.ready + self.in_flight


@dataclass(frozen=True, slots=True)
class Rates:
    """Messages per second. Count deltas give `net` only; metrics give all three."""

    net_per_s: float | None = None
    published_per_s: float | None = None
    processed_per_s: float | None = None
    source: str = "count deltas"


class RateSource(Protocol):
    def rates(self, queue_id: str) -> Rates | None: ...


ReadStats = Callable[[str], Awaitable[QueueStats]]


class History(BackgroundLoop):
    """Samples per queue, oldest first; one sampler task per dashboard."""

    task_name = "relevo-dashboard-history"

    def __init__(self, queue_ids: Iterable[str], read: ReadStats, sample_s: float = 5.0) -> None:
        super().__init__()
        self.sample_s = sample_s
        self._read = read
        size = int(KEEP_S / sample_s) + 2
        self.samples: dict[str, deque[Sample]] = {q: deque(maxlen=size) for q in queue_ids}

    def record(self, queue_id: str, stats: QueueStats, at: float | None = None) -> None:
        series = self.samples.get(queue_id)
        if series is None:
            return
        now = time.time() if at is None else at
        if series and now - series[-1].at < self.sample_s / 2:
            return  # a page read right after the sampler: nothing new to keep
        series.append(Sample(now, stats.ready, stats.in_flight, stats.delayed))
        while series and series[0].at < now - KEEP_S:
            series.popleft()

    def series(self, queue_id: str) -> list[Sample]:
        return list(self.samples.get(queue_id, ()))

    async def _run(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self.sample_s)

    async def sample_once(self) -> None:
        async def one(queue_id: str) -> None:
            try:
                async with asyncio.timeout(self.sample_s):
                    self.record(queue_id, await self._read(queue_id))
            except Exception as exc:  # a broker down must not stop the sampler
                log.debug("dashboard could not sample %s: %s", queue_id, exc)

        await asyncio.gather(*(one(q) for q in self.samples))


class CountDeltaRates:
    """Net change per second of each queue's message count over the last minute."""

    def __init__(self, history: History) -> None:
        self.history = history

    def rates(self, queue_id: str) -> Rates | None:
        series = self.history.samples.get(queue_id)
        if not series or len(series) < 2:
            return None
        last = series[-1]
        first = next((s for s in series if s.at >= last.at - RATE_WINDOW_S), series[0])
        if first is last:
            first = series[-2]
        span = last.at - first.at
        if span <= 0:
            return None
        return Rates(net_per_s=(last.messages - first.messages) / span)
