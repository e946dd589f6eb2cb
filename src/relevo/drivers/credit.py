"""Credit and settle-once bookkeeping of one subscription, shared by drivers.

A subscription may hold at most `prefetch` unsettled deliveries. `Credit` keeps them by
their driver tag: `hand_out` before pushing a delivery, `settle` when an outcome comes
in (False when the delivery was already given back, so the driver does nothing), and
`take_back` on close, which claims every delivery still out so that a late ack from an
abandoned handler returns False and does nothing.

The memory, Redis and PostgreSQL drivers keep their unsettled deliveries here. Memory
and PostgreSQL also count their credit with it (`available`, `wait`); Redis frees a
credit only once Redis has the settlement, so it counts its own and uses this part for
the settle-once guard and the give-back. AMQP's ack window (tags in delivery order, per
channel) is its own part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from relevo.message import Delivery


class Credit:
    """Unsettled deliveries of one subscription, and a wait for free credit."""

    __slots__ = ("_freed", "prefetch", "unsettled")

    def __init__(self, prefetch: int) -> None:
        self.prefetch = max(1, prefetch)
        self.unsettled: dict[Hashable, Delivery] = {}
        self._freed: asyncio.Event | None = None  # made by the first wait(): memory never waits

    @property
    def available(self) -> int:
        """How many more deliveries may be pushed now."""
        return self.prefetch - len(self.unsettled)

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
