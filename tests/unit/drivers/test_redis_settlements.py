"""Settlements of a Redis subscription, queued in rounds: credit, outages, what is unsent.

Pure bookkeeping, no Redis: the rounds' Redis calls are tested against a real server
in tests/drivers/test_redis.py."""

from __future__ import annotations

import asyncio
import threading

from relevo.drivers.credit import Credit
from relevo.drivers.redis.connection import Outage
from relevo.drivers.redis.keeper import leases, orphans
from relevo.drivers.redis.settlements import Settlements
from relevo.message import Delivery, Outcome


class Subscription:
    """A Settler that queues settlements as the Redis subscription does."""

    def __init__(self, prefetch: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.credit = Credit(prefetch)
        self.settlements = Settlements(self.credit)

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        self.settlements.add(delivery, outcome, due)

    def deliver(self, n: int) -> Delivery:
        delivery = Delivery(self, f"m{n}", b"", None, 1, f"{n}-0".encode())
        self.credit.hand_out(delivery)
        return delivery


async def test_while_redis_answers_a_settlement_frees_its_credit_before_it_is_sent() -> None:
    sub = Subscription(2)
    first, _second = sub.deliver(1), sub.deliver(2)
    first.ack()
    assert sub.settlements.queued()
    assert sub.credit.available == 1, "the reader may read on while acks are on their way"


async def test_during_an_outage_credit_frees_only_once_redis_has_the_settlement() -> None:
    sub = Subscription(2)
    first, second = sub.deliver(1), sub.deliver(2)
    first.ack()
    before = sub.settlements.take()  # a round in flight...
    assert before is not None
    sub.settlements.failed()  # ...that fails: Redis is down
    second.ack()
    assert sub.credit.available == 1, "an ack Redis does not have must keep its credit"
    third = sub.deliver(3)
    waiting = asyncio.create_task(sub.credit.wait())
    await asyncio.sleep(0)
    sub.settlements.sent(before)  # the second ack joined no round yet: it waits for its own
    await asyncio.sleep(0)
    assert not waiting.done()
    held_back = sub.settlements.take()
    assert held_back is not None
    assert held_back.acks == [second.tag]
    sub.settlements.sent(held_back)
    await asyncio.wait_for(waiting, 1)
    assert sub.credit.available == 1
    third.ack()  # a round went through: the outage is over
    assert sub.credit.available == 2
    assert not sub.settlements.outage


async def test_a_settlement_is_unsent_until_the_round_that_carries_it_is_sent() -> None:
    sub = Subscription(2)
    sub.deliver(1).ack()
    assert sub.settlements.unsent()
    round_ = sub.settlements.take()
    assert round_ is not None
    assert not sub.settlements.queued()
    assert sub.settlements.unsent()
    assert sub.settlements.take() is None
    sub.settlements.sent(round_)
    assert not sub.settlements.unsent()


async def test_a_round_carries_each_outcome_as_its_own_kind() -> None:
    sub = Subscription(4)
    acked, nacked, delayed, released = (sub.deliver(n) for n in range(4))
    acked.ack()
    nacked.nack()
    delayed.nack(delay=5.0)
    sub.settle(released, Outcome.RELEASE)
    round_ = sub.settlements.take()
    assert round_ is not None
    assert (round_.acks, round_.nacks, round_.releases) == (
        [acked.tag], [nacked.tag], [released.tag]
    )
    assert [tag for tag, _ in round_.delays] == [delayed.tag]


async def test_a_delivery_given_back_on_close_is_not_settled_afterwards() -> None:
    sub = Subscription(1)
    delivery = sub.deliver(1)
    sub.credit.take_back()
    sub.settle(delivery, Outcome.ACK)  # queued from a thread before close
    assert not sub.settlements.unsent()


async def test_an_entry_deleted_before_its_re_read_is_acked_without_counting_credit() -> None:
    sub = Subscription(1)
    sub.settlements.drop(b"7-0")
    assert sub.settlements.tags() == [b"7-0"]
    assert sub.credit.available == 1


# -- the lease keeper's rules -----------------------------------------------------------


async def test_leases_cover_held_entries_and_settled_ones_not_yet_sent() -> None:
    sub = Subscription(8)
    held, in_flight, acked, nacked, delayed, released = (sub.deliver(n) for n in range(6))
    in_flight.ack()
    round_ = sub.settlements.take()
    acked.ack()
    nacked.nack()
    delayed.nack(delay=5.0)
    sub.settle(released, Outcome.RELEASE)
    expected = {d.tag for d in (held, in_flight, acked, nacked, delayed, released)}
    assert set(leases(sub.credit.unsettled, sub.settlements)) == expected
    assert round_ is not None
    sub.settlements.sent(round_)
    assert in_flight.tag not in leases(sub.credit.unsettled, sub.settlements)


async def test_only_pending_entries_no_handler_holds_are_orphans() -> None:
    sub = Subscription(2)
    held = sub.deliver(1)
    rows = [{"message_id": held.tag}, {"message_id": b"9-0"}]
    assert orphans(rows, sub.credit.unsettled) == [b"9-0"]


async def test_redis_reached_while_a_failed_task_drops_its_connections_ends_its_pause() -> None:
    """A task that failed awaits the dropping of its idle connections before it pauses;
    another task reaching Redis meanwhile must still cut that pause short, or the
    subscription sits out a whole backoff step (up to reconnect_max_delay) for nothing."""
    outage = Outage()
    outage.failed()  # the reader's read failed
    outage.ended()  # the flusher got through while the reader dropped its connections
    await asyncio.wait_for(outage.pause(60.0), 5)


async def test_a_pause_waits_for_a_call_that_goes_through_after_the_failure() -> None:
    outage = Outage()
    outage.ended()  # an earlier outage, long over
    outage.failed()
    pausing = asyncio.create_task(outage.pause(60.0))
    await asyncio.sleep(0)
    assert not pausing.done()
    outage.ended()
    await asyncio.wait_for(pausing, 5)
