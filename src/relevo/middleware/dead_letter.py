"""Dead-lettering: a message rejected, or failed `max_attempts` times, moves to another queue.

The move publishes a copy first and acks the original only once the copy is stored,
so a crash in between duplicates the message rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from relevo.message import Delivery, Disposition, Envelope, Failure, Outcome
from relevo.middleware.base import ConsumerScope, Middleware, NackNext, Settlement

log = logging.getLogger("relevo.dead_letter")


class DeadLetterTarget(Protocol):
    entry_id: str

    async def forward(self, envelopes: Sequence[Envelope]) -> None: ...


class DeadLetter(Middleware):
    """The `dead_letter` of a queue: takes over failures past `max_attempts` and rejects."""

    def __init__(self, source_id: str, target: DeadLetterTarget, max_attempts: int) -> None:
        self.source_id = source_id
        self.target = target
        self.max_attempts = max_attempts
        self.moving: set[asyncio.Task[None]] = set()

    def nack(
        self, scope: ConsumerScope, delivery: Delivery, failure: Failure, call_next: NackNext
    ) -> None:
        if not failure.reject and delivery.attempts < self.max_attempts:
            call_next(delivery, failure)
            return
        task = asyncio.get_running_loop().create_task(
            self._move(scope, delivery, failure, call_next)
        )
        self.moving.add(task)
        task.add_done_callback(self.moving.discard)

    async def drain(self) -> None:
        """Let moves under way finish (a stopping consumer must not cut one in half)."""
        if self.moving:
            await asyncio.gather(*self.moving, return_exceptions=True)

    def busy(self) -> bool:
        return bool(self.moving)

    async def _move(
        self, scope: ConsumerScope, delivery: Delivery, failure: Failure, call_next: NackNext
    ) -> None:
        headers = dict(delivery.headers)
        headers.update(
            x_original_queue=self.source_id,
            x_dead_letter_reason=failure.reason,
            x_dead_letter_time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            attempts=delivery.attempts,
        )
        # attempts - 1 so far: its first delivery from the dead-letter queue reports them all
        copy = Envelope(delivery.id, delivery.body, headers, delivery.attempts - 1)
        try:
            await self.target.forward([copy])
        except Exception:
            log.exception(
                "could not dead-letter %s from %s to %s; it will be redelivered",
                delivery.id, self.source_id, self.target.entry_id,
            )
            failure.reject = False  # never dropped for want of a dead-letter queue
            call_next(delivery, failure)
            return
        log.warning(
            "dead-lettered %s from %s to %s after %d attempt%s: %s",
            delivery.id, self.source_id, self.target.entry_id, delivery.attempts,
            "" if delivery.attempts == 1 else "s", failure.reason,
        )
        delivery.settler.settle(delivery, Outcome.ACK)
        scope.report(delivery, Settlement(Disposition.DEAD_LETTER, failure.reason))
