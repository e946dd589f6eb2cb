"""Moving a message that failed `max_attempts` times to its dead-letter queue.

The move publishes a copy first and acks the original only once the copy is stored,
so a crash in between duplicates the message rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Protocol

from relevo.message import Delivery, Envelope, Outcome

log = logging.getLogger("relevo.dead_letter")


class DeadLetterTarget(Protocol):
    entry_id: str

    async def forward(self, envelopes: list[Envelope]) -> None: ...


class DeadLetterRouter:
    """A Delivery nack hook: redeliver, or past `max_attempts` dead-letter."""

    def __init__(self, source_id: str, target: DeadLetterTarget, max_attempts: int) -> None:
        self.source_id = source_id
        self.target = target
        self.max_attempts = max_attempts
        self.moving: set[asyncio.Task[None]] = set()

    def __call__(self, delivery: Delivery, reason: str) -> None:
        if delivery.attempts < self.max_attempts:
            delivery.settler.settle(delivery, Outcome.NACK)
            return
        task = asyncio.get_running_loop().create_task(self._move(delivery, reason))
        self.moving.add(task)
        task.add_done_callback(self.moving.discard)

    async def wait(self) -> None:
        """Let moves under way finish (a stopping consumer must not cut one in half)."""
        if self.moving:
            await asyncio.gather(*self.moving, return_exceptions=True)

    async def _move(self, delivery: Delivery, reason: str) -> None:
        headers = dict(delivery.headers)
        headers.update(
            x_original_queue=self.source_id,
            x_dead_letter_reason=reason,
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
            delivery.settler.settle(delivery, Outcome.NACK)
            return
        log.warning(
            "dead-lettered %s from %s to %s after %d attempts: %s",
            delivery.id, self.source_id, self.target.entry_id, delivery.attempts, reason,
        )
        delivery.settler.settle(delivery, Outcome.ACK)
