"""One consumer's attachment to one AMQP queue: its own channel, `basic.qos`, `basic.consume`.

Settling never blocks. An ack only records the tag; a flusher task sends one
`basic.ack(multiple=True)` for the contiguous run of settled tags at the head, once a
quarter of prefetch has settled or `ACK_DELAY_S` after the first one, whichever comes
first. Every ack frame costs a socket write, so fewer, larger acks drain faster.

Attempts must survive redelivery, and RabbitMQ's own requeue keeps no count. So a nack
(or release) publishes a copy carrying the new count in `x-relevo-attempts`, waits
for the broker's confirm, and only then acks the original: a crash in between leaves
a duplicate, never a loss. A delivery the broker marks `redelivered` was in the hands
of a consumer that died or lost its connection; it is counted the same way (copy with
one attempt more, then ack) before any handler sees it, so a message that kills its
worker every time still reaches its dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiormq
import aiormq.abc

from relevo.drivers.amqp.connection import CONNECT_ERRORS, AmqpLink
from relevo.drivers.amqp.delays import Ladders
from relevo.drivers.amqp.headers import assign_message_id, read_headers, with_attempts
from relevo.drivers.amqp.publisher import Publisher
from relevo.drivers.amqp.settings import AmqpConsumerOptions
from relevo.drivers.base import DeliverySink, deliver_unreadable, watch_task
from relevo.errors import DriverUnavailable, QueueNotFound, RelevoError
from relevo.message import Delivery, Headers, Outcome, Unreadable

log = logging.getLogger("relevo.drivers.amqp")

ACK_DELAY_S = 0.002
"""Longest an ack waits to share a frame with others (a quarter of prefetch goes at once)."""



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
        self._publisher = publisher
        self._sink = sink
        self._prefetch = prefetch
        self._options = options
        self._publish_timeout_s = publish_timeout_s
        self._on_closed = on_closed
        self._redeclare = redeclare
        self._ladders = ladders
        self._channel: aiormq.Channel | None = None
        self._consumer_tag: str | None = None
        # Per channel: tags in delivery order until acked at the broker; the unsettled
        # ones (None while a copy is being published); tags acked alone, still queued
        # behind an unsettled one.
        self._order: deque[int] = deque()
        self._open: dict[int, Delivery | None] = {}
        self._unflushed = 0  # acks settled since the last flush
        self._ack_batch = max(1, prefetch // 4)
        self._ack_timer: asyncio.TimerHandle | None = None
        self._sent: set[int] = set()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # close() and the flusher never interleave frames
        self._flusher: asyncio.Task[None] | None = None
        self._moves: set[asyncio.Task[None]] = set()
        self._resubscribing: asyncio.Task[None] | None = None
        self._active = True
        self._closed = False
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.loop.create_task(work, name=name)
        watch_task(task, self.failure, log)
        return task

    @property
    def in_flight(self) -> int:
        """Deliveries this consumer holds that the broker has not seen acked yet."""
        return len(self._order) - len(self._sent)

    # -- subscribing --------------------------------------------------------------

    async def start(self, deadline: float) -> None:
        await self._subscribe(deadline)
        self._flusher = self._task(self._flush_loop(), f"relevo-amqp-ack:{self.queue}")

    async def _subscribe(self, deadline: float | None) -> None:
        try:
            channel = await self._link.channel(deadline, confirms=False)
        except CONNECT_ERRORS as exc:  # the link dropped again while opening the channel
            raise DriverUnavailable(f"cannot open a channel for {self.queue!r}: {exc}") from exc
        self._reset(channel)
        try:
            async with asyncio.timeout_at(deadline):
                await channel.basic_qos(prefetch_count=self._prefetch)
                ok = await channel.basic_consume(
                    self.queue,
                    self._on_message,
                    exclusive=self._options.exclusive,
                    consumer_tag=self._options.consumer_tag,
                )
        except aiormq.exceptions.ChannelNotFoundEntity:
            self._channel = None
            raise QueueNotFound(f"AMQP queue {self.queue!r} does not exist") from None
        except CONNECT_ERRORS as exc:  # exclusive use elsewhere, or the link dropped
            self._channel = None
            raise DriverUnavailable(
                f"cannot consume from AMQP queue {self.queue!r}: {exc}"
            ) from exc
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
        if channel is not self._channel or consumer_tag != self._consumer_tag:
            return
        log.warning("AMQP queue %r cancelled its consumer; subscribing again", self.queue)
        task = self._task(self._close_channel(channel), f"relevo-amqp-close:{self.queue}")
        self._moves.add(task)  # awaited by close(), like the other background work
        task.add_done_callback(self._moves.discard)

    def _reset(self, channel: aiormq.Channel | None) -> None:
        """Forget the previous channel: its deliveries died with it and the broker redelivers them.

        Each is claimed, so a handler still holding one cannot ack it on a dead channel.
        """
        for delivery in self._open.values():
            if delivery is not None:
                delivery.claim()
        self._channel = channel
        self._order.clear()
        self._open.clear()
        self._unflushed = 0
        self._sent.clear()

    def _channel_lost(self, channel: aiormq.Channel) -> None:
        if channel is not self._channel:
            return
        self._reset(None)
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
        if message.channel is not self._channel:
            return  # from a channel already given up; the broker redelivers it
        deliver = message.delivery
        tag = _tag(message)
        props = message.header.properties
        self._order.append(tag)
        try:
            headers, prior = read_headers(props)
        except Exception as exc:  # a foreign publisher's table we cannot map
            self._deliver_unreadable(message, tag, f"unreadable headers ({exc!r})")
            return
        if not props.message_id:  # other publishers often omit it: give it one that sticks
            props.message_id = assign_message_id()
        if not self._active:  # arrived after cancel: give it back untouched
            self._open[tag] = None
            self._move(message, prior, None)
        elif deliver.redelivered:  # type: ignore[union-attr]
            self._open[tag] = None  # its last consumer died holding it: that was an attempt
            self._move(message, prior + 1, (headers, prior + 2))
        else:
            delivery = Delivery(self, props.message_id, message.body, headers, prior + 1, message)
            self._open[tag] = delivery
            self._sink(delivery)

    def _deliver_unreadable(
        self, message: aiormq.abc.DeliveredMessage, tag: int, reason: str
    ) -> None:
        props = message.header.properties
        if not props.message_id:
            props.message_id = assign_message_id()
        delivery = Unreadable(self, props.message_id, message.body, 1, message,
                              f"unreadable message: {reason}")  # the consumer logs it
        self._open[tag] = delivery
        if self._active:
            deliver_unreadable(self._sink, delivery)
        else:
            delivery.release()

    # -- settling -----------------------------------------------------------------

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        message: aiormq.abc.DeliveredMessage = delivery.tag
        tag = _tag(message)
        if self._open.get(tag) is not delivery:
            return  # its channel is gone, or close() gave it back
        if outcome is Outcome.ACK:
            del self._open[tag]
            self._unflushed += 1
            if self._unflushed >= self._ack_batch:
                self._wake.set()
            elif self._ack_timer is None:
                self._ack_timer = self.loop.call_later(ACK_DELAY_S, self._wake.set)
        else:
            self._open[tag] = None
            attempts = delivery.attempts if outcome is Outcome.NACK else delivery.attempts - 1
            self._move(message, attempts, None, due if outcome is Outcome.NACK else None)

    def _move(
        self,
        message: aiormq.abc.DeliveredMessage,
        attempts: int,
        fallback: tuple[Headers, int] | None,
        due: float | None = None,
    ) -> None:
        task = self._task(self._republish(message, attempts, fallback, due),
                          f"relevo-amqp-move:{self.queue}")
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _republish(
        self,
        message: aiormq.abc.DeliveredMessage,
        attempts: int,
        fallback: tuple[Headers, int] | None,
        due: float | None,
    ) -> None:
        """Publish a copy with `attempts`, then ack the original; if that fails, hand it back.

        With a future `due` the copy goes to the queue's delay ladder instead of its tail.
        """
        channel = message.channel
        tag = _tag(message)
        copy = [(with_attempts(message.header.properties, attempts), message.body)]
        deadline = self.loop.time() + self._publish_timeout_s

        def still_wanted() -> bool:
            return channel is self._channel  # else the broker gives the original back

        try:
            delay_s = due - time.time() if due is not None else 0.0
            if delay_s > 0:
                await self._ladders.publish(self.queue, copy, delay_s, deadline, still_wanted)
            else:
                await self._publisher.publish(self.queue, copy, deadline, still_wanted)
        except RelevoError as exc:
            if channel is not self._channel or tag not in self._open:
                return
            if fallback is not None and self._active:
                # Could not count the crash by copying (queue full?): deliver it as is.
                headers, count = fallback
                delivery = Delivery(self, message.header.properties.message_id or "",
                                    message.body, headers, count, message)
                self._open[tag] = delivery
                self._sink(delivery)
                return
            log.warning("AMQP queue %r: requeueing a message as is (%s)", self.queue, exc)
            try:
                await channel.basic_nack(tag, requeue=True, wait=False)
            except CONNECT_ERRORS:
                return
            # Only now may a multiple ack pass this tag: the nack is ahead of it on the wire.
            if channel is self._channel and tag in self._open:
                del self._open[tag]
                self._sent.add(tag)
                self._wake.set()
            return
        if channel is self._channel and tag in self._open:
            del self._open[tag]
            self._wake.set()

    # -- flushing acks ------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._ack_timer is not None:
                self._ack_timer.cancel()
                self._ack_timer = None
            await self._flush()

    async def _flush(self) -> None:
        async with self._flushing:
            channel = self._channel
            if channel is None:
                return
            frames = self._collect_acks()
            try:
                for tag, multiple in frames:
                    await channel.basic_ack(tag, multiple=multiple, wait=False)
            except CONNECT_ERRORS:
                pass  # the channel died: the broker redelivers what it never saw acked

    def _collect_acks(self) -> list[tuple[int, bool]]:
        """Ack frames for the settled tags: one multiple ack for the run at the head.

        Settled tags behind a delivery still in a handler wait for the head to settle,
        unless they hold a batch's worth of the broker's credit: then each is acked alone.
        """
        self._unflushed = 0
        order, unsettled, sent = self._order, self._open, self._sent
        last = 0
        while order:
            tag = order[0]
            if tag in unsettled:
                break
            order.popleft()
            if sent and tag in sent:
                sent.discard(tag)
            else:
                last = tag
        frames = [(last, True)] if last else []
        if len(order) - len(unsettled) - len(sent) >= self._ack_batch:
            for tag in order:
                if tag not in unsettled and tag not in sent:
                    frames.append((tag, False))
                    sent.add(tag)
        return frames

    # -- stopping -----------------------------------------------------------------

    async def cancel(self) -> None:
        if not self._active:
            return
        self._active = False
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        channel, tag = self._channel, self._consumer_tag
        if channel is not None and tag is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECT_ERRORS):
                await channel.basic_cancel(tag, timeout=self._publish_timeout_s)

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
        await self._flush()
        channel = self._channel
        self._reset(None)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if channel is not None and not channel.is_closed:
            await self._close_channel(channel)
        self._on_closed(self)

    @staticmethod
    async def _close_channel(channel: aiormq.Channel) -> None:
        with contextlib.suppress(*CONNECT_ERRORS):
            await channel.close()

    def connection_lost(self) -> None:
        """The link saw the connection drop; the channel's own close callback may come later."""
        channel = self._channel
        if channel is not None:
            self._channel_lost(channel)


def _tag(message: aiormq.abc.DeliveredMessage) -> int:
    """The delivery tag; consumers only ever get Basic.Deliver frames, which carry one."""
    return message.delivery.delivery_tag  # type: ignore[union-attr,return-value]
