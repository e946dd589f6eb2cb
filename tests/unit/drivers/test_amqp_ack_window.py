"""The AMQP ack window without a broker: which frames acks become, and when not to send one."""

from __future__ import annotations

import asyncio
from typing import Any

from relevo.drivers.amqp.ack_window import AckWindow
from relevo.message import Delivery
from tests.unit.drivers.amqp_parts import Wire
from tests.unit.settlers import RecordingSettler
from tests.waiting import wait_until


def window_on(wire: Any, prefetch: int = 100) -> AckWindow:
    window = AckWindow(prefetch)
    window.reset(wire)
    return window


def hand_out(window: AckWindow, *tags: int) -> dict[int, Delivery]:
    settler = RecordingSettler()
    held = {tag: settler.delivery(f"m{tag}") for tag in tags}
    for tag, delivery in held.items():
        window.hold(tag, delivery)
    return held


async def test_a_multiple_ack_stops_before_the_first_unsettled_tag() -> None:
    window = window_on(Wire())
    held = hand_out(window, 1, 2, 3, 4)
    for tag in (1, 2, 4):
        assert window.ack(tag, held[tag])
    assert window.collect() == [(2, True)], "tag 3 is still in a handler"
    assert window.in_flight == 2
    window.ack(3, held[3])
    assert window.collect() == [(4, True)]
    assert window.in_flight == 0


async def test_a_tag_whose_copy_is_being_published_holds_back_every_ack_behind_it() -> None:
    wire = Wire()
    window = window_on(wire)
    held = hand_out(window, 1, 2)
    assert window.move(1, held[1])
    window.ack(2, held[2])
    assert window.collect() == [], "an ack of 2 would ack 1 before its copy is stored"
    window.copied(wire, 1)
    assert window.collect() == [(2, True)]


async def test_a_requeued_tag_is_passed_by_a_multiple_ack_but_never_named_by_one() -> None:
    wire = Wire()
    window = window_on(wire)
    held = hand_out(window, 1, 2, 3)
    window.ack(1, held[1])
    window.move(2, held[2])
    window.requeued(wire, 2)  # the broker has its nack already
    assert window.collect() == [(1, True)]
    window.ack(3, held[3])
    assert window.collect() == [(3, True)]
    assert window.in_flight == 0


async def test_settled_tags_behind_a_stuck_head_are_acked_alone_once_they_hold_a_batch() -> None:
    window = window_on(Wire(), prefetch=8)  # a batch is 2
    held = hand_out(window, 1, 2, 3, 4)
    window.ack(2, held[2])
    assert window.collect() == []
    window.ack(3, held[3])
    assert window.collect() == [(2, False), (3, False)]
    assert window.in_flight == 2
    window.ack(1, held[1])
    assert window.collect() == [(1, True)], "2 and 3 are acked already: never twice"
    window.ack(4, held[4])
    assert window.collect() == [(4, True)]


async def test_a_delivery_settles_once_and_only_on_the_channel_it_came_from() -> None:
    window = window_on(Wire())
    held = hand_out(window, 1, 2)
    assert window.ack(1, held[1])
    assert not window.ack(1, held[1])
    assert not window.move(1, held[1])
    stranger = RecordingSettler().delivery("other")  # same tag, another channel's delivery
    assert not window.ack(2, stranger)
    assert window.ack(2, held[2])


async def test_a_channel_reset_discards_the_old_channels_tags_and_voids_their_deliveries() -> None:
    old, new = Wire(), Wire()
    window = window_on(old)
    held = hand_out(window, 1, 2, 3)
    window.ack(1, held[1])
    window.move(2, held[2])
    window.reset(new)
    assert window.collect() == [], "tags of a dead channel mean nothing on the new one"
    assert window.in_flight == 0
    assert held[3].ack() is False, "claimed on reset: the broker redelivers it"
    window.copied(old, 2)  # a copy confirmed after the reset
    assert not window.holds(old, 2)
    fresh = hand_out(window, 1)
    assert window.ack(1, fresh[1])
    assert window.collect() == [(1, True)]


async def test_an_ack_for_a_delivery_of_a_lost_channel_is_voided() -> None:
    window = window_on(Wire())
    held = hand_out(window, 1)
    window.reset(None)
    assert held[1].ack() is False, "claimed on reset: the broker redelivers it"


async def test_close_sends_the_acks_due_then_gives_back_the_rest() -> None:
    wire = Wire()
    window = window_on(wire)
    held = hand_out(window, 1, 2, 3)
    window.ack(1, held[1])
    assert await window.close() is wire
    assert wire.frames == [("ack", 1, True)]
    assert window.channel is None
    assert window.in_flight == 0
    assert held[2].ack() is False
    assert held[3].nack() is False


async def test_a_batch_of_acks_is_flushed_by_the_running_window() -> None:
    wire = Wire()
    window = window_on(wire, prefetch=8)
    held = hand_out(window, 1, 2, 3)
    flusher = asyncio.create_task(window.run())
    try:
        window.ack(1, held[1])
        window.ack(2, held[2])
        await wait_until(lambda: wire.frames == [("ack", 2, True)], what="the batch's ack")
        window.ack(3, held[3])  # alone: sent once it has waited ACK_DELAY_S
        await wait_until(lambda: wire.frames[-1:] == [("ack", 3, True)], what="the lone ack")
    finally:
        flusher.cancel()


async def test_a_flush_on_a_dead_channel_ends_quietly() -> None:
    wire = Wire()
    window = window_on(wire)
    held = hand_out(window, 1)
    window.ack(1, held[1])
    wire.drop()
    await window.flush()  # the broker redelivers what it never saw acked
    assert wire.frames == []
