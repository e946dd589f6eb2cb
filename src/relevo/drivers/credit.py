"""Credit and settle-once bookkeeping of one subscription, shared by drivers.

A subscription may hold at most `prefetch` unsettled deliveries. `Credit` keeps them by
their driver tag: `hand_out` before pushing a delivery, `settle` when an outcome comes
in (False when the delivery was already given back, so the driver does nothing), and
`take_back` on close, which claims every delivery still out so that a late ack from an
abandoned handler returns False and does nothing.

A settled delivery frees its credit at once. A driver that must not run ahead of
settlements its broker does not have yet (Redis during an outage) calls `hold_back`
right after `settle`, and `repay` once the broker has them: `available` stays down
until then. Drivers that never hold back pay nothing for it.

The memory, Redis and PostgreSQL drivers keep their unsettled deliveries here;
PostgreSQL and Redis also count their credit with it (`available`, `wait`). Memory's
dispatch loop keeps a plain count beside it. AMQP's ack window
(drivers/amqp/ack_window.py) is its own part: it keeps int tags in delivery order per
channel, with a place held for each tag whose copy is still being published, which a
map of deliveries cannot say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from relevo.message import Delivery


class Credit:
    """Unsettled deliveries of one subscription, and a wait for free credit."""

    __slots__ = ("_freed", "_room", "prefetch", "unsettled")

    def __init__(self, prefetch: int) -> None:
        self.prefetch = max(1, prefetch)
        self.unsettled: dict[Hashable, Delivery] = {}
        self._room = self.prefetch  # prefetch less the credit held back
        self._freed: asyncio.Event | None = None  # made by the first wait(): memory never waits

    @property
    def available(self) -> int:
        """How many more deliveries may be pushed now."""
        return self._room - len(self.unsettled)

    def hand_out(self, delivery: Delivery) -> None:
        """Count a delivery about to be pushed (its tag must be unique among those out)."""
        self.unsettled[delivery.tag] = delivery

    def settle(self, delivery: Delivery) -> bool:
        """Free the delivery's credit; False if it is no longer out (given back already)."""
        if self.unsettled.pop(delivery.tag, None) is None:
            return False
        if self._freed is not None:
            self._freed.set()
        return True

    def hold_back(self) -> None:
        """Keep the credit of the delivery just settled until `repay`: the broker does not
        have its settlement yet."""
        self._room -= 1

    def repay(self, count: int) -> None:
        """Free the credit of `count` held-back settlements the broker now has."""
        if count:
            self._room += count
            if self._freed is not None:
                self._freed.set()

    async def wait(self) -> None:
        """Return once at least one credit is free."""
        while self.available <= 0:
            if self._freed is None:
                self._freed = asyncio.Event()
            self._freed.clear()
            await self._freed.wait()

    def take_back(self) -> list[Delivery]:
        """Claim and forget every delivery still out (its settle-once right is used up).

        A delivery whose handler is settling it right now (from a worker thread) cannot
        be claimed: it stays, and its own settlement arrives on the loop soon after.
        """
        held = [d for d in self.unsettled.values() if d.claim()]
        for delivery in held:
            del self.unsettled[delivery.tag]
        return held
