"""One consumer's attachment to one AMQP queue: its own channel, `basic.qos`, `basic.consume`.

The parts it composes: the ack window (ack_window.py) batches the acks and keeps a
multiple ack from covering an unsettled delivery; the republisher (republisher.py)
turns a nack or release into a copy with the new attempt count, stored before the
original is acked. A delivery the broker marks `redelivered` was in the hands of a
consumer that died or lost its connection; it is counted the same way (copy with one
attempt more, then ack) before any handler sees it, so a message that kills its worker
every time still reaches its dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiormq
import aiormq.abc

from relevo.drivers.amqp.ack_window import AckWindow, tag_of
from relevo.drivers.amqp.connection import (
    AmqpLink,
    close_quietly,
    dropped_link_fails,
    unless_dropped,
)
from relevo.drivers.amqp.delays import Ladders
from relevo.drivers.amqp.headers import assign_message_id, read_headers
from relevo.drivers.amqp.publisher import Publisher
from relevo.drivers.amqp.queues import queue_boundary
from relevo.drivers.amqp.republisher import Fallback, Republisher
from relevo.drivers.amqp.settings import AmqpConsumerOptions
from relevo.drivers.base import DeliverySink, deliver_unreadable, watch_task
from relevo.errors import QueueNotFound, RelevoError
from relevo.message import Delivery, Headers, Outcome, Unreadable

log = logging.getLogger("relevo.drivers.amqp")


class AmqpSubscription:
    """Deliveries from one `basic.consume`, never more than `prefetch` unacked at the broker."""

    def __init__(
        self,
        link: AmqpLink,
        publisher: Publisher,
        queue: str,
        sink: DeliverySink,
        prefetch: int,
        options: AmqpConsumerOptions,
        publish_timeout_s: float,
        on_closed: Callable[[AmqpSubscription], None],
        redeclare: Callable[[str], Awaitable[None]],
        ladders: Ladders,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.queue = queue
        self._link = link
        self._sink = sink
        self._prefetch = prefetch
        self._options = options
        self._publish_timeout_s = publish_timeout_s
        self._on_closed = on_closed
        self._redeclare = redeclare
        self._consumer_tag: str | None = None
        self._window = AckWindow(prefetch)
        self._republisher = Republisher(
            queue, self._window, publisher, ladders, publish_timeout_s, self._background
        )
        self._flusher: asyncio.Task[None] | None = None
        self._moves: set[asyncio.Task[None]] = set()  # background work close() awaits
        self._resubscribing: asyncio.Task[None] | None = None
        self._active = True
        self._closed = False
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.loop.create_task(work, name=name)
        watch_task(task, self.failure, log)
        return task

    def _background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = self._task(work, name)
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    @property
    def in_flight(self) -> int:
        """Deliveries this consumer holds that the broker has not seen acked yet."""
        return self._window.in_flight

    # -- subscribing --------------------------------------------------------------

    async def start(self, deadline: float) -> None:
        await self._subscribe(deadline)
        self._flusher = self._task(self._window.run(), f"relevo-amqp-ack:{self.queue}")

    async def _subscribe(self, deadline: float | None) -> None:
        # The link may drop again while the channel opens.
        with dropped_link_fails(f"cannot open a channel for {self.queue!r}"):
            channel = await self._link.channel(deadline, confirms=False)
        self._window.reset(channel)
        try:  # fails on a missing queue, exclusive use elsewhere, a drop or the deadline
            with queue_boundary("consume from", self.queue):
                async with asyncio.timeout_at(deadline):
                    await channel.basic_qos(prefetch_count=self._prefetch)
                    ok = await channel.basic_consume(
                        self.queue,
                        self._on_message,
                        exclusive=self._options.exclusive,
                        consumer_tag=self._options.consumer_tag,
                    )
        except RelevoError:
            # The broker may have registered the consumer after the deadline: open, its
            # channel would hold messages no one settles until the connection drops.
            self._window.channel = None
            await close_quietly(channel)
            raise
        self._consumer_tag = ok.consumer_tag
        channel.closing.add_done_callback(lambda _: self._channel_lost(channel))
        channel.on_consumer_cancel_callbacks.add(
            lambda frame: self._cancelled_by_broker(channel, frame.consumer_tag)
        )

    def _cancelled_by_broker(self, channel: aiormq.Channel, consumer_tag: str | None) -> None:
        """The broker ended the consumer (its queue was deleted): start over on a new channel.

        Closing the channel returns what it held; `_resubscribe` re-declares the queue
        if this driver declared it, so a consumer outlives an operator's `delete_queue`.
        """
        if channel is not self._window.channel or consumer_tag != self._consumer_tag:
            return
        log.warning("AMQP queue %r cancelled its consumer; subscribing again", self.queue)
        self._background(close_quietly(channel), f"relevo-amqp-close:{self.queue}")

    def _channel_lost(self, channel: aiormq.abc.AbstractChannel) -> None:
        if channel is not self._window.channel:
            return
        self._window.reset(None)
        resubscribing = self._resubscribing
        if self._active and not self._closed and (resubscribing is None or resubscribing.done()):
            self._resubscribing = self._task(self._resubscribe(),
                                             f"relevo-amqp-resubscribe:{self.queue}")

    async def _resubscribe(self) -> None:
        """Consume again once the link is back (it re-declared the queues first)."""
        attempt = 0
        while self._active and not self._closed:
            try:
                await self._subscribe(None)
                log.info("AMQP consumer on %r subscribed again", self.queue)
                return
            except QueueNotFound:  # deleted on the broker: declare it again, if we did
                with contextlib.suppress(RelevoError):
                    await self._redeclare(self.queue)
            except RelevoError as exc:
                if self._link.ready.is_set():
                    log.warning("AMQP consumer on %r cannot resubscribe: %s", self.queue, exc)
            attempt += 1
            await asyncio.sleep(self._link.backoff.delay_s(attempt))

    # -- delivering ---------------------------------------------------------------

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        window = self._window
        if message.channel is not window.channel:
            return  # from a channel already given up; the broker redelivers it
        tag = tag_of(message)
        props = message.header.properties
        try:
            headers, prior = read_headers(props)
        except Exception as exc:  # a foreign publisher's table we cannot map
            self._deliver_unreadable(message, tag, f"unreadable headers ({exc!r})")
            return
        if not props.message_id:  # other publishers often omit it: give it one that sticks
            props.message_id = assign_message_id()
        if not self._active:  # arrived after cancel: give it back untouched
            window.hold(tag, None)
            self._republisher.move(message, prior)
        elif message.delivery.redelivered:  # type: ignore[union-attr]
            window.hold(tag, None)  # its last consumer died holding it: that was an attempt
            self._republisher.move(
                message, prior + 1, fallback=self._as_is(message, headers, prior + 2)
            )
        else:
            delivery = Delivery(self, props.message_id, message.body, headers, prior + 1, message)
            window.hold(tag, delivery)
            self._sink(delivery)

    def _as_is(
        self, message: aiormq.abc.DeliveredMessage, headers: Headers, attempts: int
    ) -> Fallback:
        """Deliver a redelivered message as it is when its counted copy cannot be stored."""

        def deliver() -> bool:
            if not self._active:
                return False
            delivery = Delivery(self, message.header.properties.message_id or "",
                                message.body, headers, attempts, message)
            self._window.reopen(tag_of(message), delivery)
            self._sink(delivery)
            return True

        return deliver

    def _deliver_unreadable(
        self, message: aiormq.abc.DeliveredMessage, tag: int, reason: str
    ) -> None:
        props = message.header.properties
        if not props.message_id:
            props.message_id = assign_message_id()
        delivery = Unreadable(self, props.message_id, message.body, 1, message,
                              f"unreadable message: {reason}")  # the consumer logs it
        self._window.hold(tag, delivery)
        if self._active:
            deliver_unreadable(self._sink, delivery)
        else:
            delivery.release()

    # -- settling -----------------------------------------------------------------

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        message: aiormq.abc.DeliveredMessage = delivery.tag
        tag = tag_of(message)
        if outcome is Outcome.ACK:
            self._window.ack(tag, delivery)  # False: its channel is gone, or close() gave it back
        elif self._window.move(tag, delivery):
            attempts = delivery.attempts if outcome is Outcome.NACK else delivery.attempts - 1
            self._republisher.move(message, attempts, due if outcome is Outcome.NACK else None)

    # -- stopping -----------------------------------------------------------------

    async def cancel(self) -> None:
        if not self._active:
            return
        self._active = False
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        channel, tag = self._window.channel, self._consumer_tag
        if channel is not None and tag is not None and not channel.is_closed:
            await unless_dropped(channel.basic_cancel(tag, timeout=self._publish_timeout_s))

    async def close(self) -> None:
        """Stop consuming, finish moving copies, send every ack, then give back the rest.

        Closing the channel returns the unacked deliveries to the queue; the broker marks
        them redelivered, so their next delivery counts one attempt more.
        """
        if self._closed:
            return
        await self.cancel()
        self._closed = True
        if self._moves:
            await asyncio.gather(*list(self._moves), return_exceptions=True)
        channel = await self._window.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await close_quietly(channel)
        self._on_closed(self)

    def connection_lost(self) -> None:
        """The link saw the connection drop; the channel's own close callback may come later."""
        channel = self._window.channel
        if channel is not None:
            self._channel_lost(channel)
