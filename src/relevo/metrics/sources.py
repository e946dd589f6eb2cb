"""What a scrape reads of one application: its figures, its queues' counts, its entries.

Queue counts come from the drivers (`info()`), at most once per `cache_s` however many
scrapes arrive, all queues at once; a queue that is not running reports zeros.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from relevo.drivers.base import QueueStats
from relevo.metrics.figures import Figures, Snapshot

_ZERO = {"ready": 0, "in_flight": 0, "delayed": 0}


class CountedQueue(Protocol):
    async def stats(self) -> QueueStats: ...


class AppSources:
    """Takes one process's snapshot on the event loop."""

    def __init__(
        self,
        figures: Figures,
        queues: Callable[[], Mapping[str, CountedQueue]],
        drivers: Callable[[], Mapping[str, object]],
        entries: Callable[[], list[str]],
        running: Callable[[str], bool],
        cache_s: float,
        in_flight: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.figures = figures
        self.queues = queues
        self.drivers = drivers
        self.entries = entries
        self.running = running
        self.cache_s = cache_s
        self.in_flight = in_flight
        self._states: dict[str, dict[str, int]] = {}
        self._read_at = -1e18
        self._reading: asyncio.Task[dict[str, dict[str, int]]] | None = None

    async def collect(self) -> Snapshot:
        snap = self.counted()
        snap["queues"] = await self.queue_states()
        return snap

    def counted(self) -> Snapshot:
        """Everything but the queue counts (which need the drivers): no waiting."""
        snap = self.figures.snapshot(self.in_flight())
        snap["reconnects"] = {d: int(getattr(drv, "reconnects", 0)) for d, drv in
                              self.drivers().items()}
        snap["up"] = {entry: int(self.running(entry)) for entry in self.entries()}
        return snap

    async def queue_states(self) -> dict[str, dict[str, int]]:
        if time.monotonic() - self._read_at < self.cache_s:
            return self._states
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> dict[str, dict[str, int]]:
        queues = self.queues()
        ids = [q for q in queues if self.running(q)]
        found = await asyncio.gather(*(queues[q].stats() for q in ids), return_exceptions=True)
        states = {q: dict(_ZERO) for q in queues}
        for queue_id, stats in zip(ids, found, strict=True):
            if isinstance(stats, QueueStats):
                states[queue_id] = {
                    "ready": stats.ready, "in_flight": stats.in_flight, "delayed": stats.delayed,
                }
            elif queue_id in self._states:  # a failed read: the last figures we had
                states[queue_id] = self._states[queue_id]
        self._states, self._read_at = states, time.monotonic()
        return states
