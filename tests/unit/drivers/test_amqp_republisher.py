"""The AMQP republisher without a broker: a copy is stored before its original may be acked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from pamqp.commands import Basic

from relevo.drivers.amqp.ack_window import AckWindow
from relevo.drivers.amqp.headers import read_headers
from relevo.drivers.amqp.republisher import Republisher
from relevo.errors import QueueFull
from relevo.message import Delivery
from tests.unit.drivers.amqp_parts import Wire, delivered
from tests.unit.settlers import RecordingSettler

Copy = tuple[Basic.Properties, bytes]


class Store:
    """The publisher and the delay ladder: each copy waits for `confirm()` (or `refuse()`)."""

    def __init__(self) -> None:
        self.copies: list[tuple[str, Copy, float | None]] = []  # (queue, copy, delay_s)
        self.wanted: list[Callable[[], bool] | None] = []
        self._answer: asyncio.Future[BaseException | None] | None = None
        self._asked = asyncio.Event()

    async def keep(self, queue: str, messages: Sequence[Copy], delay_s: float | None,
                     still_wanted: Callable[[], bool] | None) -> None:
        self.copies.extend((queue, message, delay_s) for message in messages)
        self.wanted.append(still_wanted)
        self._answer = asyncio.get_running_loop().create_future()
        self._asked.set()
        error = await self._answer
        if error is not None:
            raise error

    async def publish(self, queue: str, messages: Sequence[Copy], deadline: float,
                      still_wanted: Callable[[], bool] | None = None) -> None:
        await self.keep(queue, messages, None, still_wanted)

    async def confirm(self, error: BaseException | None = None) -> None:
        await self._asked.wait()
        assert self._answer is not None
        self._answer.set_result(error)


class Ladder:
    """The delay ladder's side of a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def publish(self, queue: str, messages: Sequence[Copy], delay_s: float,
                      deadline: float, still_wanted: Callable[[], bool] | None = None) -> None:
        await self.store.keep(queue, messages, delay_s, still_wanted)


class Parts:
    """A window on one wire, a republisher into a Store, and the tasks it spawned."""

    def __init__(self) -> None:
        self.wire = Wire()
        self.window = AckWindow(100)
        self.window.reset(cast(Any, self.wire))
        self.store = Store()
        self.tasks: list[asyncio.Task[None]] = []
        self.republisher = Republisher("q", self.window, cast(Any, self.store),
                                       cast(Any, Ladder(self.store)), 30.0, self._spawn)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(work, name=name))

    def nacked(self, tag: int, attempts: int = 1) -> Delivery:
        """A delivery out to a handler that nacks it: its tag now waits for the copy."""
        message = delivered(self.wire, tag)
        delivery = Delivery(RecordingSettler(), f"m{tag}", b"{}", {}, attempts, message)
        self.window.hold(tag, delivery)
        assert self.window.move(tag, delivery)
        return delivery

    async def settled(self) -> None:
        await asyncio.gather(*self.tasks)


async def test_the_copy_is_stored_before_the_original_is_acked() -> None:
    parts = Parts()
    delivery = parts.nacked(1, attempts=1)
    parts.republisher.move(delivery.tag, 1)
    await asyncio.sleep(0)
    assert parts.window.collect() == [], "the original must wait for the copy's confirm"
    await parts.store.confirm()
    await parts.settled()
    assert parts.window.collect() == [(1, True)]
    (queue, (props, _), delay_s), = parts.store.copies
    assert (queue, delay_s) == ("q", None)
    assert read_headers(props)[1] == 1, "the copy carries the failed attempts"


async def test_a_copy_due_later_waits_in_the_delay_ladder() -> None:
    parts = Parts()
    delivery = parts.nacked(1)
    parts.republisher.move(delivery.tag, 1, due=time.time() + 60)
    await parts.store.confirm()
    await parts.settled()
    (_, _, delay_s), = parts.store.copies
    assert delay_s is not None
    assert 0 < delay_s <= 60


async def test_a_copy_the_broker_refuses_requeues_the_original_and_acks_pass_it() -> None:
    parts = Parts()
    delivery = parts.nacked(1)
    behind = Delivery(RecordingSettler(), "m2", b"{}", {}, 1, delivered(parts.wire, 2))
    parts.window.hold(2, behind)
    parts.republisher.move(delivery.tag, 1)
    await parts.store.confirm(QueueFull("full"))
    await parts.settled()
    assert parts.wire.frames == [("nack", 1, False)]
    parts.window.ack(2, behind)
    assert parts.window.collect() == [(2, True)]
    assert parts.window.in_flight == 0


async def test_a_redelivered_message_whose_copy_fails_is_handed_out_as_it_is() -> None:
    parts = Parts()
    delivery = parts.nacked(1)
    handed: list[int] = []

    def as_is() -> bool:
        handed.append(1)
        parts.window.reopen(1, delivery)
        return True

    parts.republisher.move(delivery.tag, 1, fallback=as_is)
    await parts.store.confirm(QueueFull("full"))
    await parts.settled()
    assert handed == [1]
    assert parts.wire.frames == [], "neither nacked nor acked: a handler has it"
    assert parts.window.holds(cast(Any, parts.wire), 1)


async def test_a_copy_for_a_channel_already_gone_is_wanted_no_more_and_sends_nothing() -> None:
    parts = Parts()
    delivery = parts.nacked(1)
    parts.republisher.move(delivery.tag, 1)
    await asyncio.sleep(0)
    parts.window.reset(cast(Any, Wire()))  # the broker gives the original back itself
    still_wanted, = parts.store.wanted
    assert still_wanted is not None
    assert not still_wanted()
    await parts.store.confirm(QueueFull("full"))
    await parts.settled()
    assert parts.wire.frames == []
    assert parts.window.collect() == []


async def test_a_nack_on_a_dead_channel_leaves_the_tag_to_the_broker() -> None:
    parts = Parts()
    delivery = parts.nacked(1)
    parts.republisher.move(delivery.tag, 1)
    parts.wire.drop()
    await parts.store.confirm(QueueFull("full"))
    await parts.settled()  # no error: the closed channel gives the original back
    assert parts.wire.frames == []
    assert parts.window.in_flight == 1
