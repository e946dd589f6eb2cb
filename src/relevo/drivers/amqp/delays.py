"""Delayed messages in the broker: a ladder of wait queues per queue, without plugins.

A delay is counted in units of `UNIT_S` and written in binary. Level `i` of a queue's
ladder is a quorum queue whose messages all live `UNIT_S * 2**i` (per-queue TTL, so the
head always expires first) and then dead-letter, at least once, to the level below.
Each level has a topic exchange that routes on bit `i` of the routing key: 1 -> its
wait queue, 0 -> the next exchange down; level 0's exchange sends a 0 to the queue
itself and its wait queue dead-letters straight to it. A message is published to the
exchange of its highest set bit and waits once per set bit:

    delay 650 ms = 13 units = 0b1101: wait 400 ms (level 3), 200 ms (level 2), 50 ms (level 0)

The levels a queue needs are declared on its first delay that needs them (and stay:
they are durable broker objects). Nothing waits in a worker; a waiting message is a
stored message of the broker, and moves between levels with the broker's at-least-once
dead-lettering (the wait queue keeps it until the next queue confirmed it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import aiormq
from pamqp.commands import Basic
from pamqp.common import FieldValue

from relevo.drivers.amqp.connection import close_quietly, dropped_link_fails
from relevo.drivers.amqp.publisher import Publisher
from relevo.errors import PublishError, QueueNotFound

UNIT_S = 0.05
"""The ladder's resolution: a delay is rounded up to a multiple of it (never early)."""

LEVELS = 32
"""Bits of the delay in units: the longest delay is UNIT_S * (2**32 - 1), about 6.8 years."""

MAX_DELAY_S = UNIT_S * (2**LEVELS - 1)

PROBE_EVERY_S = 10.0
"""How often info() looks for ladder levels another process declared (see `Ladders.count`)."""

_UNIT_MS = round(UNIT_S * 1000)
_NAME_MAX = 255

ChannelFn = Callable[[], Awaitable[aiormq.Channel]]


def units_for(delay_s: float) -> int:
    """The number of units to wait: at least `delay_s`, never less."""
    return max(1, math.ceil(delay_s * 1000 / _UNIT_MS))


def routing_key(units: int) -> str:
    """LEVELS words of 0/1, the highest bit first."""
    return ".".join("1" if units >> level & 1 else "0" for level in range(LEVELS - 1, -1, -1))


def level_name(queue: str, level: int) -> str:
    """The wait queue and the exchange of one level of `queue`'s ladder."""
    return f"relevo.delay.{queue}.{level:02d}"


def _pattern(level: int, bit: str) -> str:
    """A topic binding key matching `bit` at `level` and anything elsewhere."""
    words = ["*"] * LEVELS
    words[LEVELS - 1 - level] = bit
    return ".".join(words)


def _wait_queue_arguments(queue: str, level: int) -> dict[str, FieldValue]:
    arguments: dict[str, FieldValue] = {
        "x-queue-type": "quorum",
        "x-message-ttl": _UNIT_MS << level,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }
    if level == 0:
        arguments["x-dead-letter-exchange"] = ""
        arguments["x-dead-letter-routing-key"] = queue
    else:
        arguments["x-dead-letter-exchange"] = level_name(queue, level - 1)
    return arguments


class Ladders:
    """Declares the ladders this driver needs and publishes into them."""

    def __init__(self, channel: ChannelFn, publisher: Publisher) -> None:
        self._channel = channel
        self._publisher = publisher
        self._tops: dict[str, int] = {}  # queue -> highest level known to exist
        self._probed: dict[str, float] = {}  # queue -> when levels above were last looked for
        self._lock = asyncio.Lock()

    async def publish(
        self,
        queue: str,
        messages: Sequence[tuple[Basic.Properties, bytes]],
        delay_s: float,
        deadline: float,
        still_wanted: Callable[[], bool] | None = None,
    ) -> None:
        """Store `messages` in `queue`'s ladder, ready after `delay_s` (rounded up)."""
        if delay_s > MAX_DELAY_S:
            raise PublishError(
                f"a delay of {delay_s:.0f}s is longer than the AMQP driver's longest "
                f"({MAX_DELAY_S:.0f}s)"
            )
        units = units_for(delay_s)
        top = units.bit_length() - 1
        key = routing_key(units)
        for retry in (False, True):
            await self.ensure(queue, top, deadline)
            try:
                await self._publisher.publish(
                    queue, messages, deadline, still_wanted, via=(level_name(queue, top), key)
                )
                return
            except QueueNotFound:  # the ladder was deleted behind this driver's back
                if retry:
                    raise
                self._tops.pop(queue, None)

    async def ensure(self, queue: str, top: int, deadline: float) -> None:
        """Declare levels 0..top of `queue`'s ladder, unless this driver already did."""
        if self._tops.get(queue, -1) >= top:
            return
        if len(level_name(queue, 0).encode()) > _NAME_MAX:
            raise PublishError(
                f"AMQP queue {queue!r}: its name is too long for delay queues "
                f"({level_name(queue, 0)!r} passes {_NAME_MAX} bytes)"
            )
        async with self._lock:
            have = self._tops.get(queue, -1)
            if have >= top:
                return
            with dropped_link_fails(f"cannot declare the delay queues of AMQP queue {queue!r}"):
                async with asyncio.timeout_at(deadline):
                    await self._declare(queue, have + 1, top)
            self._tops[queue] = top

    async def _declare(self, queue: str, low: int, top: int) -> None:
        channel = await self._channel()
        for level in range(low, top + 1):
            name = level_name(queue, level)
            await channel.exchange_declare(name, exchange_type="topic", durable=True)
            await channel.queue_declare(
                name, durable=True, arguments=_wait_queue_arguments(queue, level)
            )
            await channel.queue_bind(name, name, routing_key=_pattern(level, "1"))
            if level == 0:
                await channel.queue_bind(queue, name, routing_key=_pattern(0, "0"))
            else:
                await channel.exchange_bind(
                    level_name(queue, level - 1), name, routing_key=_pattern(level, "0")
                )

    def known(self, queue: str) -> bool:
        """Whether `queue` has a ladder, as far as this driver knows."""
        return queue in self._tops

    async def rebind(self, channel: aiormq.Channel, queue: str) -> None:
        """Bind `queue` to its ladder again (the queue was declared anew: its bindings died)."""
        if queue in self._tops:
            await channel.queue_bind(queue, level_name(queue, 0), routing_key=_pattern(0, "0"))

    async def count(self, queue: str, probe: ChannelFn) -> int:
        """Messages waiting in `queue`'s ladder, whoever declared its levels.

        Levels exist from 0 up without gaps. Those known here are counted on the control
        channel, highest first, the way messages move, so a message moving down while
        they are read is seen once (a message in the middle of a dead-letter transfer
        is counted by neither level for those few ms). Levels above them (declared by
        another process) are looked for on a channel from `probe`, as the search ends
        in a 404 that closes the channel and that RabbitMQ logs as an error: hence at
        most once per `PROBE_EVERY_S` per queue.
        """
        top = self._tops.get(queue, -1)
        now = time.monotonic()
        if top + 1 < LEVELS and now - self._probed.get(queue, -PROBE_EVERY_S) >= PROBE_EVERY_S:
            self._probed[queue] = now
            await self._probe(queue, top + 1, await probe())
            top = self._tops.get(queue, -1)
        total = 0
        channel = await self._channel()
        for level in range(top, -1, -1):  # the way messages move: none slips past the count
            try:
                ok = await channel.queue_declare(level_name(queue, level), passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:  # deleted behind our back
                self._tops.pop(queue, None)
                return total
            total += ok.message_count or 0
        return total

    async def _probe(self, queue: str, low: int, channel: aiormq.Channel) -> None:
        """Raise the known top of `queue`'s ladder to the highest level that exists."""
        try:
            for level in range(low, LEVELS):
                try:
                    await channel.queue_declare(level_name(queue, level), passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    return
                self._tops[queue] = level
        finally:
            await close_quietly(channel)
