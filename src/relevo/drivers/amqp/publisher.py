"""Confirmed publishing on one channel that the whole driver shares.

Every publish is persistent, `mandatory` (a message the broker cannot route to a queue
comes back instead of vanishing) and confirmed: it returns only once the broker has
the message. A message caught in a connection drop is published again once the link
is back (at-least-once: it may then exist twice). A message refused by a full queue is
retried until the publish deadline, then `QueueFull`, as the memory driver does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aiormq
from pamqp.commands import Basic

from relevo.drivers.amqp.connection import CONNECT_ERRORS, AmqpLink, close_quietly
from relevo.errors import DriverUnavailable, QueueFull, QueueNotFound

_CONFIRMED, _RETURNED, _REFUSED, _LOST = range(4)
_FULL_RETRY_S = 0.05
_LOST_RETRY_S = 0.01


class Publisher:
    """Publishes with confirms; reopens its channel after a drop."""

    def __init__(self, link: AmqpLink) -> None:
        self._link = link
        self._channel: aiormq.Channel | None = None
        self._opening = asyncio.Lock()

    def reset(self) -> None:
        """The connection is gone: the next publish opens a fresh channel."""
        self._channel = None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        await close_quietly(channel)

    async def channel(self, deadline: float | None) -> aiormq.Channel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._opening:
            channel = self._channel
            if channel is None or channel.is_closed:
                channel = self._channel = await self._link.channel(deadline, confirms=True)
            return channel

    async def publish(
        self,
        queue: str,
        messages: Sequence[tuple[Basic.Properties, bytes]],
        deadline: float,
        still_wanted: Callable[[], bool] | None = None,
        via: tuple[str, str] | None = None,
    ) -> None:
        """Publish `messages` to `queue` in order; return once the broker confirmed each.

        `still_wanted` is asked before each retry; once it says no, the publish gives up
        quietly (a nack's copy whose original the broker is redelivering anyway).
        `via` (exchange, routing key) replaces the default exchange's route to `queue`
        (a delay ladder's exchange); `queue` then only names the queue in errors.
        """
        exchange, key = via if via is not None else ("", queue)
        todo = list(messages)
        refused = False
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    if still_wanted is not None and not still_wanted():
                        return
                    try:
                        channel = await self.channel(deadline)
                    except CONNECT_ERRORS:  # dropped between `ready` and the channel
                        await asyncio.sleep(_LOST_RETRY_S)
                        continue
                    if len(todo) == 1:
                        results = [await self._one(channel, exchange, key, *todo[0])]
                    else:
                        results = await asyncio.gather(
                            *(self._one(channel, exchange, key, props, body)
                              for props, body in todo)
                        )
                    retry = []
                    for item, result in zip(todo, results, strict=True):
                        if result == _CONFIRMED:
                            continue
                        if result == _RETURNED:
                            raise QueueNotFound(f"AMQP queue {queue!r} does not exist")
                        refused = refused or result == _REFUSED
                        retry.append(item)
                    if not retry:
                        return
                    todo = retry
                    await asyncio.sleep(_FULL_RETRY_S if refused else _LOST_RETRY_S)
        except TimeoutError:
            if refused:
                raise QueueFull(
                    f"AMQP queue {queue!r} stayed full (max_length reached) for the publish "
                    f"timeout"
                ) from None
            raise DriverUnavailable(
                f"publishing to AMQP queue {queue!r} did not complete within the publish "
                f"timeout: the broker is unreachable"
            ) from None

    @staticmethod
    async def _one(
        channel: aiormq.Channel, exchange: str, key: str, props: Basic.Properties, body: bytes
    ) -> int:
        try:
            await channel.basic_publish(
                body, exchange=exchange, routing_key=key, properties=props, mandatory=True,
                wait=False,
            )
        except (aiormq.exceptions.PublishError, aiormq.exceptions.ChannelNotFoundEntity):
            return _RETURNED  # unroutable, or (a delay ladder's) exchange deleted: 404
        except aiormq.exceptions.DeliveryError:
            return _REFUSED
        except CONNECT_ERRORS:
            return _LOST
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return _LOST  # the channel closed under us and cancelled its confirmation
        return _CONFIRMED
