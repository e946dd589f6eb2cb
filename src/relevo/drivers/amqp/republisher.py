"""Copies of nacked, released and redelivered AMQP messages, stored before the original goes.

Attempts must survive redelivery, and RabbitMQ's own requeue keeps no count. So a nack
(or release) publishes a copy carrying the new count in `x-relevo-attempts`, waits for
the broker's confirm, and only then lets the ack window ack the original: a crash in
between leaves a duplicate, never a loss. With a future due time the copy goes to the
queue's delay ladder instead of its tail. When the broker will not take the copy in
time (queue full, broker gone), the original goes back as it is with
`basic.nack(requeue=True)`, or (a redelivery being counted) is handed out as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq.abc

from relevo.drivers.amqp.ack_window import AckWindow, tag_of
from relevo.drivers.amqp.connection import unless_dropped
from relevo.drivers.amqp.delays import Ladders
from relevo.drivers.amqp.headers import with_attempts
from relevo.drivers.amqp.publisher import Publisher
from relevo.errors import RelevoError

log = logging.getLogger("relevo.drivers.amqp")

Spawn = Callable[[Coroutine[Any, Any, None], str], object]
"""Starts a background task its owner awaits on close (and whose failure it reports)."""

Fallback = Callable[[], bool]
"""Asked when the copy failed: True if it handed the original out as it is instead."""


class Republisher:
    """Moves one consumer's messages to copies with a new attempt count."""

    def __init__(
        self,
        queue: str,
        window: AckWindow,
        publisher: Publisher,
        ladders: Ladders,
        publish_timeout_s: float,
        spawn: Spawn,
    ) -> None:
        self.queue = queue
        self._window = window
        self._publisher = publisher
        self._ladders = ladders
        self._publish_timeout_s = publish_timeout_s
        self._spawn = spawn

    def move(
        self,
        message: aiormq.abc.DeliveredMessage,
        attempts: int,
        due: float | None = None,
        fallback: Fallback | None = None,
    ) -> None:
        """Copy `message` with `attempts` (to the ladder if `due` is ahead), then ack it.

        Its tag must be held in the window with a placeholder (see `AckWindow.move`).
        """
        self._spawn(self._republish(message, attempts, due, fallback),
                    f"relevo-amqp-move:{self.queue}")

    async def _republish(
        self,
        message: aiormq.abc.DeliveredMessage,
        attempts: int,
        due: float | None,
        fallback: Fallback | None,
    ) -> None:
        window = self._window
        channel = message.channel
        tag = tag_of(message)
        copy = [(with_attempts(message.header.properties, attempts), message.body)]
        deadline = asyncio.get_running_loop().time() + self._publish_timeout_s

        def still_wanted() -> bool:
            return channel is window.channel  # else the broker gives the original back

        try:
            delay_s = due - time.time() if due is not None else 0.0
            if delay_s > 0:
                await self._ladders.publish(self.queue, copy, delay_s, deadline, still_wanted)
            else:
                await self._publisher.publish(self.queue, copy, deadline, still_wanted)
        except RelevoError as exc:
            if not window.holds(channel, tag):
                return
            if fallback is not None and fallback():
                return  # could not count the crash by copying (queue full?): delivered as is
            log.warning("AMQP queue %r: requeueing a message as is (%s)", self.queue, exc)
            if await unless_dropped(channel.basic_nack(tag, requeue=True, wait=False)):
                # Only now may a multiple ack pass this tag: the nack is ahead of it on the wire.
                window.requeued(channel, tag)
            return
        window.copied(channel, tag)
