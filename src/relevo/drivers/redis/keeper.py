"""The lease keeper of one Redis subscription: what it holds stays its own, what silent
consumers held comes back.

Every `claim_idle / 3` the keeper extends the lease of every entry this consumer still
has pending, held by a handler or settled and not yet sent (XCLAIM JUSTID resets its
idle time, so neither a slow handler nor an ack held back by an outage is reclaimed).
Then it gives back its own entries no handler holds (a read whose reply a crash cut
off), and runs `reclaim.lua`, which gives back the entries of consumers that went silent
for `claim_idle`. It does neither while this consumer has settlements not yet sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from redis.exceptions import ResponseError

from relevo.drivers.redis.connection import NETWORK_ERRORS, Outage
from relevo.drivers.redis.member import Member
from relevo.drivers.redis.scripts import RECLAIM
from relevo.drivers.redis.settlements import Settlements

log = logging.getLogger("relevo.drivers.redis")

RECLAIM_BATCH = 100
RECLAIM_ROUNDS = 10  # at most this many batches per keeper tick, so one tick stays short


def leases(unsettled: Iterable[Hashable], settlements: Settlements) -> list[Any]:
    """Entries pending for this consumer: held by a handler, or settled and not sent."""
    return [*unsettled, *settlements.tags()]


def orphans(rows: Iterable[Mapping[str, Any]], unsettled: Mapping[Hashable, Any]) -> list[Any]:
    """Of this consumer's pending entries (XPENDING rows), those no handler holds."""
    return [row["message_id"] for row in rows if row["message_id"] not in unsettled]


class LeaseKeeper:
    """Renews this consumer's leases and reclaims what silent consumers left."""

    def __init__(
        self,
        member: Member,
        unsettled: Mapping[Hashable, Any],
        settlements: Settlements,
        outage: Outage,
    ) -> None:
        self.member = member
        self.unsettled = unsettled  # deliveries handlers hold, by entry ID
        self.settlements = settlements
        self.outage = outage
        self.history_read = False  # the reader re-read this name's own pending entries
        self.stopped = False
        settings = member.settings
        self._claim_ms = max(1, int(settings.claim_idle * 1000))
        self._stale_ms = int((2 * settings.claim_idle + settings.block) * 1000)

    async def run(self) -> None:
        period = self.member.settings.claim_idle / 3
        failed = False
        while not self.stopped:
            try:
                # Leases first: after an outage, what this consumer holds is renewed
                # before anything is reclaimed, here or by another consumer's keeper.
                await self.renew()
                if failed:
                    failed = False
                    self.outage.ended()  # the flusher sends held-back settlements now
                await self.reclaim()
            except (ResponseError, *NETWORK_ERRORS) as exc:  # the reader reports outages
                if self.stopped:  # a cancellation the client turned into an error
                    return
                failed = True
                log.debug("redis lease/reclaim on %s skipped: %s", self.member.stream, exc)
            await asyncio.sleep(period)

    async def renew(self) -> None:
        """Reset the idle time of every entry still pending for this consumer."""
        pending = leases(self.unsettled, self.settlements)
        if pending:
            m = self.member
            await m.client.xclaim(m.stream, m.group, m.consumer, 0, pending, justid=True)

    async def reclaim(self) -> None:
        """Give back orphans and silent consumers' entries, unless settlements wait: an
        entry acked here but not yet acked in Redis must not come back."""
        if self.settlements.unsent():
            return
        await self._give_back_orphans()
        m = self.member
        for _ in range(RECLAIM_ROUNDS):
            moved = await RECLAIM.run(
                m.client,
                [m.stream],
                [m.group, m.consumer, self._claim_ms, RECLAIM_BATCH, self._stale_ms],
            )
            if moved:
                log.info("redis reclaimed %d entries of silent consumers on %s",
                            moved, m.stream)
            if moved < RECLAIM_BATCH:
                return

    async def _give_back_orphans(self) -> None:
        """Entries pending for this consumer that no handler holds: a read whose reply a
        dropped connection cut off. They never reached a handler: attempts unchanged."""
        if not self.history_read:  # the reader is still re-reading them itself
            return
        m = self.member
        rows: Any = await m.client.xpending_range(
            m.stream, m.group, "-", "+", RECLAIM_BATCH, m.consumer, idle=self._claim_ms,
        )
        lost = orphans(rows, self.unsettled)
        if lost and not self.settlements.unsent():
            moved = await m.requeue(lost, 0)
            if moved:
                log.info("redis gave back %d entries on %s whose read a lost connection "
                            "cut off", moved, m.stream)
