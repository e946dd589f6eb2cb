"""Settlements of one Redis subscription, queued and sent in rounds.

`Settlements` queues outcomes as handlers settle; the `Flusher` sends what is queued in
one pipeline per round: acks as XACK + XDEL (the entry leaves the stream, which
therefore does not grow), nacks and releases through `requeue.lua`, delayed nacks
through `retry.lua` (the copy goes to the queue's sorted set of delayed messages in the
same step as the original leaves). Whatever is settled while a round is in flight joins
the next.

While Redis answers, a settlement frees its credit at once, so the reader reads the next
entries while acks are on their way. Once a round has failed (an outage), a settlement's
credit is held back until Redis has it, so however long an outage holds acks back the
reader cannot run ahead of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from relevo.drivers.credit import Credit
from relevo.drivers.redis.connection import (
    NETWORK_ERRORS,
    Outage,
    backoff_s,
    drop_idle_connections,
)
from relevo.drivers.redis.member import Member
from relevo.drivers.redis.scripts import REQUEUE, RETRY
from relevo.message import Delivery, Outcome

log = logging.getLogger("relevo.drivers.redis")


@dataclass(slots=True)
class Round:
    """The settlements one pipeline sends."""

    acks: list[bytes]
    nacks: list[bytes]
    releases: list[bytes]
    delays: list[tuple[bytes, float]]  # delayed nacks: (entry ID, due)
    owed: int  # credit held back by an outage, freed once Redis has this round

    def tags(self) -> list[bytes]:
        return [*self.acks, *self.nacks, *self.releases, *(tag for tag, _ in self.delays)]


class Settlements:
    """Outcomes queued for the next round, the round in flight, and the credit owed."""

    __slots__ = ("_acks", "_delays", "_nacks", "_owed", "_releases", "credit", "dirty",
                 "outage", "sending")

    def __init__(self, credit: Credit) -> None:
        self.credit = credit
        self.dirty = asyncio.Event()  # set when something is queued: the flusher wakes
        self.outage = False  # a round failed and none has gone through since
        self.sending: Round | None = None
        self._acks: list[bytes] = []
        self._nacks: list[bytes] = []
        self._releases: list[bytes] = []
        self._delays: list[tuple[bytes, float]] = []
        self._owed = 0  # credit held back for what is queued

    def add(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        """Queue a handler's outcome (nothing if the delivery was given back already)."""
        if not self.credit.settle(delivery):
            return
        tag = delivery.tag
        if outcome is Outcome.ACK:
            self._acks.append(tag)
        elif outcome is Outcome.NACK:
            if due is None:
                self._nacks.append(tag)
            else:
                self._delays.append((tag, due))
        else:
            self._releases.append(tag)
        if self.outage:
            self.credit.hold_back()
            self._owed += 1
        self.dirty.set()

    def drop(self, tag: bytes) -> None:
        """Ack an entry that was never handed out (deleted before its re-read): no credit."""
        self._acks.append(tag)
        self.dirty.set()

    def queued(self) -> bool:
        return bool(self._acks or self._nacks or self._releases or self._delays)

    def unsent(self) -> bool:
        """Settled entries Redis does not have yet: queued, or in the round in flight."""
        return self.sending is not None or self.queued()

    def tags(self) -> list[bytes]:
        """The entries of every settlement not yet sent, in flight included."""
        sending = self.sending.tags() if self.sending is not None else []
        return [*self._acks, *self._nacks, *self._releases,
                *(tag for tag, _ in self._delays), *sending]

    def take(self) -> Round | None:
        """Start a round with everything queued (None when nothing is)."""
        if not self.queued():
            return None
        sending = Round(self._acks, self._nacks, self._releases, self._delays, self._owed)
        self._acks, self._nacks, self._releases, self._delays = [], [], [], []
        self._owed = 0
        self.sending = sending
        return sending

    def failed(self) -> None:
        """A round failed: credit of what is settled from now on waits until it is sent."""
        self.outage = True

    def sent(self, done: Round) -> None:
        """Redis has the round: free its held-back credit (what was settled since waits
        for its own round)."""
        self.sending = None
        self.outage = False
        self.credit.repay(done.owed)


class Flusher:
    """Sends a subscription's settlements to Redis, one pipeline per round."""

    def __init__(
        self,
        member: Member,
        delayed: str,
        on_delayed: Callable[[float], None],
        settlements: Settlements,
        outage: Outage,
    ) -> None:
        self.member = member
        self.delayed = delayed  # the queue's sorted set of delayed messages
        self._on_delayed = on_delayed  # wakes the driver's mover for a new due time
        self.settlements = settlements
        self.outage = outage
        self._closing = False

    async def run(self) -> None:
        """Send rounds as settlements come in; after `finish`, return once all are sent."""
        settlements = self.settlements
        while True:
            await settlements.dirty.wait()
            settlements.dirty.clear()
            await self.flush()
            if self._closing and not settlements.queued():
                return

    def finish(self) -> None:
        self._closing = True
        self.settlements.dirty.set()

    async def flush(self) -> None:
        """Send one round, retrying through an outage until Redis has it."""
        done = self.settlements.take()
        if done is None:
            return
        m = self.member
        acks, nacks, releases, delays_ = done.acks, done.nacks, done.releases, done.delays
        retry_args: list[Any] = [m.group, m.consumer]
        for tag, due in delays_:
            retry_args += (tag, repr(due))
        delays = None
        while True:
            pipe = m.client.pipeline(transaction=False)
            if acks:
                pipe.xack(m.stream, m.group, *acks)
                pipe.xdel(m.stream, *acks)
            calls = [(bump, ids) for bump, ids in ((1, nacks), (0, releases)) if ids]
            for bump, ids in calls:
                REQUEUE.queue(pipe, [m.stream], [m.group, m.consumer, bump, *ids])
            if delays_:
                RETRY.queue(pipe, [m.stream, self.delayed], retry_args)
            try:
                results = await pipe.execute(raise_on_error=False)
                break
            except NETWORK_ERRORS as exc:
                self.outage.failed()
                delays = delays or backoff_s(m.settings)
                delay = next(delays)
                log.warning("redis settle on %s failed (%s); retrying in %.2fs",
                               m.stream, exc, delay)
                self.settlements.failed()
                await drop_idle_connections(m.client)
                await self.outage.pause(delay)
        if delays is not None:
            self.outage.ended()
        start = 2 if acks else 0
        for (bump, ids), result in zip(calls, results[start : start + len(calls)], strict=True):
            if isinstance(result, NoScriptError):
                await m.requeue(ids, bump)
        if delays_:
            if isinstance(results[-1], NoScriptError):
                await RETRY.run(m.client, [m.stream, self.delayed], retry_args)
            self._on_delayed(min(due for _, due in delays_))
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, NoScriptError):
                log.warning("redis settle on %s: %s", m.stream, result)
        self.settlements.sent(done)
