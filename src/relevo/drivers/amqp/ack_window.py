"""The ack window of one AMQP consumer: which delivery tags an ack frame may cover.

A `basic.ack(multiple=True)` acks every tag up to the one it names. So the window keeps
the current channel's tags in delivery order until the broker has their ack, and a
placeholder for each tag whose copy is still being published (nack, release,
redelivery): a multiple ack never passes a tag still open.

Settling never blocks. An ack only records the tag; `run` sends one multiple ack for
the settled run at the head once a quarter of prefetch has settled, or `ACK_DELAY_S`
after the first, whichever comes first. Every ack frame costs a socket write, so fewer,
larger acks drain faster. Settled tags stuck behind a delivery still in a handler are
acked one by one once they hold a batch's worth of the broker's credit.

Tags belong to one channel: `reset` forgets the old channel's (the broker redelivers
them) and claims their deliveries, so a late ack from a handler does nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiormq.abc

from relevo.drivers.amqp.connection import unless_dropped
from relevo.message import Delivery

ACK_DELAY_S = 0.002
"""Longest an ack waits to share a frame with others (a quarter of prefetch goes at once)."""


def tag_of(message: aiormq.abc.DeliveredMessage) -> int:
    """The delivery tag; consumers only ever get Basic.Deliver frames, which carry one."""
    return message.delivery.delivery_tag  # type: ignore[union-attr,return-value]


class AckWindow:
    """The tags of one channel not yet acked at the broker, and the flushing of their acks."""

    def __init__(self, prefetch: int) -> None:
        self.channel: aiormq.abc.AbstractChannel | None = None
        self.batch = max(1, prefetch // 4)
        self._loop = asyncio.get_running_loop()
        self._order: deque[int] = deque()  # tags in delivery order, until acked at the broker
        self._open: dict[int, Delivery | None] = {}  # unsettled; None while a copy is published
        self._sent: set[int] = set()  # settled at the broker alone, still queued behind the head
        self._unflushed = 0  # acks settled since the last flush
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # close() and the flusher never interleave frames

    @property
    def in_flight(self) -> int:
        """Deliveries the broker has not seen acked yet."""
        return len(self._order) - len(self._sent)

    def reset(self, channel: aiormq.abc.AbstractChannel | None) -> None:
        """Forget the previous channel: its deliveries died with it and the broker redelivers them.

        Each is claimed, so a handler still holding one cannot ack it on a dead channel.
        """
        for delivery in self._open.values():
            if delivery is not None:
                delivery.claim()
        self.channel = channel
        self._order.clear()
        self._open.clear()
        self._unflushed = 0
        self._sent.clear()

    def hold(self, tag: int, delivery: Delivery | None) -> None:
        """A delivery arrived on the current channel (None: it goes straight to a copy)."""
        self._order.append(tag)
        self._open[tag] = delivery

    def holds(self, channel: aiormq.abc.AbstractChannel, tag: int) -> bool:
        """Whether `tag` of `channel` is still unsettled here (its channel is the current one)."""
        return channel is self.channel and tag in self._open

    def ack(self, tag: int, delivery: Delivery) -> bool:
        """Count `delivery` acked; False if it is no longer held (channel gone, given back)."""
        if self._open.get(tag) is not delivery:
            return False
        del self._open[tag]
        self._unflushed += 1
        if self._unflushed >= self.batch:
            self._wake.set()
        elif self._timer is None:
            self._timer = self._loop.call_later(ACK_DELAY_S, self._wake.set)
        return True

    def move(self, tag: int, delivery: Delivery) -> bool:
        """Keep `delivery`'s place while its copy is published; False if no longer held."""
        if self._open.get(tag) is not delivery:
            return False
        self._open[tag] = None
        return True

    def reopen(self, tag: int, delivery: Delivery) -> None:
        """A tag whose copy failed is handed out as it is after all."""
        self._open[tag] = delivery

    def copied(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        """The broker confirmed the tag's copy: the next ack may cover the original."""
        if channel is self.channel and tag in self._open:
            del self._open[tag]
            self._wake.set()

    def requeued(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        """A `basic.nack` for the tag is on the wire: a multiple ack may pass it, never name it."""
        if channel is self.channel and tag in self._open:
            del self._open[tag]
            self._sent.add(tag)
            self._wake.set()

    async def run(self) -> None:
        """Flush whenever a batch is due or the first ack has waited `ACK_DELAY_S` (a task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self.flush()

    async def flush(self) -> None:
        """Send the ack frames due now on the current channel."""
        async with self._flushing:
            channel = self.channel
            if channel is None:
                return
            for tag, multiple in self.collect():
                if not await unless_dropped(channel.basic_ack(tag, multiple=multiple, wait=False)):
                    return  # the channel died: the broker redelivers what it never saw acked

    async def close(self) -> aiormq.abc.AbstractChannel | None:
        """Send every ack due, then forget the rest: closing the returned channel gives it back."""
        await self.flush()
        channel = self.channel
        self.reset(None)
        return channel

    def collect(self) -> list[tuple[int, bool]]:
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
        if len(order) - len(unsettled) - len(sent) >= self.batch:
            for tag in order:
                if tag not in unsettled and tag not in sent:
                    frames.append((tag, False))
                    sent.add(tag)
        return frames
