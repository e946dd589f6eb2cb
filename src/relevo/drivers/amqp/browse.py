"""Looking at a queue without consuming it: AMQP has no such read, so borrow and give back.

A browse opens a channel of its own and takes messages with `basic.get` without
acking them, from the head, one after the other. What it keeps (remove) it acks; the
rest goes back when the channel closes: RabbitMQ puts requeued messages of a classic
queue back in their former places, so the order is kept.

The limits, written in docs/drivers/amqp.md: while a browse holds messages, consumers
cannot get them (they get the ones behind); the broker marks every message given back
`redelivered`, which relevo's consumers count as one failed attempt (a crashed consumer
looks the same); and a browse reads at most `MAX_DEPTH` messages into the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiormq
import aiormq.abc
from pamqp.commands import Basic

from relevo.drivers.amqp.connection import AmqpLink, close_quietly
from relevo.drivers.amqp.headers import read_headers
from relevo.drivers.amqp.queues import queue_boundary
from relevo.message import Envelope

MAX_DEPTH = 10_000
"""How many messages one browse may hold; deeper messages cannot be peeked or removed."""

Visit = Callable[[Envelope], tuple[bool, bool]]
"""Called per message in queue order; answers (remove it, go on browsing)."""


class Browser:
    """peek / remove on one driver's connection."""

    def __init__(self, link: AmqpLink, timeout_s: float) -> None:
        self.link = link
        self.timeout_s = timeout_s

    async def peek(self, queue: str, limit: int, after: str | None) -> list[Envelope]:
        found: list[Envelope] = []
        started = after is None

        def visit(envelope: Envelope) -> tuple[bool, bool]:
            nonlocal started
            if started:
                found.append(envelope)
                return False, len(found) < limit
            started = envelope.id == after
            return False, True

        if limit > 0:
            await self.browse(queue, visit)
        return found

    async def remove(self, queue: str, ids: set[str]) -> int:
        left = set(ids)

        def visit(envelope: Envelope) -> tuple[bool, bool]:
            hit = envelope.id in left
            left.discard(envelope.id)
            return hit, bool(left)

        if left:
            await self.browse(queue, visit)
        return len(ids) - len(left)

    async def browse(self, queue: str, visit: Visit) -> None:
        async with self._channel(queue) as channel:
            for _ in range(MAX_DEPTH):
                message = await channel.basic_get(queue, no_ack=False)
                if not isinstance(message.delivery, Basic.GetOk):
                    return  # GetEmpty: the queue has no more ready messages
                props = message.header.properties
                headers, attempts = read_headers(props)
                envelope = Envelope(props.message_id or "", message.body, headers, attempts)
                remove, go_on = visit(envelope)
                if remove:
                    await channel.basic_ack(message.delivery.delivery_tag or 0)
                if not go_on:
                    return

    @contextlib.asynccontextmanager
    async def _channel(self, queue: str) -> AsyncIterator[aiormq.Channel]:
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        channel: aiormq.Channel | None = None
        try:
            with queue_boundary("browse", queue):
                channel = await self.link.channel(deadline, confirms=False)
                yield channel
        finally:
            await close_quietly(channel)  # gives back every message not acked, in place
