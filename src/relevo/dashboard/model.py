"""What the pages show, read from the application: entries, queues, consumers.

Every read of a broker is bounded by `READ_TIMEOUT_S`; a queue whose driver does not
answer is shown with the error instead of holding the whole page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from relevo.app import App
from relevo.dashboard.history import Rates, RateSource
from relevo.drivers.base import QueueStats

READ_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class EntryRow:
    id: str
    kind: str
    status: str


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: str
    name: str  # broker-side
    driver: str
    codec: str
    dead_letter: str | None  # the queue its failures go to
    dead_letter_for: tuple[str, ...]  # queues whose failures come here
    max_attempts: int | None
    stats: QueueStats | None
    error: str | None
    rates: Rates | None
    quiet_peek: bool  # False: peeking marks messages redelivered (AMQP), see the queue page

    @property
    def is_dead_letter_queue(self) -> bool:
        return bool(self.dead_letter_for)


@dataclass(frozen=True, slots=True)
class ConsumerRow:
    id: str
    queue: str
    func: str
    status: str
    concurrency: int
    prefetch: int
    in_flight: int | None  # held by this process; None when it does not run here


class Model:
    def __init__(self, app: App, rates: RateSource) -> None:
        self.app = app
        self.rate_source = rates
        queues = app.registry.queues()
        self.queue_ids = [e.id for e in sorted(queues, key=lambda e: e.id)]
        self._dead_letter_for: dict[str, list[str]] = {}
        for entry in queues:
            if entry.settings.dead_letter is not None:
                self._dead_letter_for.setdefault(entry.settings.dead_letter.queue, []).append(
                    entry.id
                )

    def entries(self) -> list[EntryRow]:
        return [
            EntryRow(e.id, e.kind, self.app.status(e.id))
            for e in sorted(self.app.registry, key=lambda e: (e.kind, e.id))
        ]

    def has_queue(self, queue_id: str) -> bool:
        return queue_id in self.app.queues

    async def stats(self, queue_id: str) -> QueueStats:
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await self.app.queue_stats(queue_id)

    async def queue(self, queue_id: str) -> QueueRow:
        entry = self.app.registry[queue_id]
        settings = entry.settings
        stats: QueueStats | None = None
        error: str | None = None
        try:
            stats = await self.stats(queue_id)
        except TimeoutError:
            error = f"no answer from its driver within {READ_TIMEOUT_S:g}s"
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        dead_letter = settings.dead_letter
        return QueueRow(
            id=queue_id,
            name=self.app.queues[queue_id].name,
            driver=settings.driver,
            codec=settings.codec,
            dead_letter=dead_letter.queue if dead_letter else None,
            dead_letter_for=tuple(sorted(self._dead_letter_for.get(queue_id, ()))),
            max_attempts=dead_letter.max_attempts if dead_letter else None,
            stats=stats,
            error=error,
            rates=self.rate_source.rates(queue_id),
            quiet_peek=self.app.queues[queue_id].driver.capabilities.quiet_peek,
        )

    async def queues(self) -> list[QueueRow]:
        return list(await asyncio.gather(*(self.queue(q) for q in self.queue_ids)))

    def consumers(self) -> list[ConsumerRow]:
        rows = []
        for entry in sorted(self.app.registry.consumers(), key=lambda e: e.id):
            settings = entry.settings
            consumer = self.app.consumer(entry.id)
            local = consumer is not None and consumer.running
            rows.append(ConsumerRow(
                id=entry.id,
                queue=settings.queue,
                func=settings.func,
                status=self.app.status(entry.id),
                concurrency=settings.concurrency,
                prefetch=settings.prefetch,
                in_flight=consumer.in_flight if local and consumer is not None else None,
            ))
        return rows

    def has_consumer(self, entry_id: str) -> bool:
        return entry_id in self.app.registry and self.app.registry[entry_id].kind == (
            "queue.consumer"
        )
