"""Credit: the unsettled deliveries of one subscription, without a broker."""

from __future__ import annotations

import asyncio
import threading

from relevo.drivers.credit import Credit
from relevo.message import Delivery, Outcome


class Recorder:
    """A Settler that records what reaches the driver."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.credit = Credit(2)
        self.applied: list[tuple[str, Outcome]] = []

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        if self.credit.settle(delivery):
            self.applied.append((delivery.id, outcome))

    def deliver(self, n: int) -> Delivery:
        delivery = Delivery(self, f"m{n}", b"", None, 1, n)
        self.credit.hand_out(delivery)
        return delivery


async def test_credit_counts_deliveries_out_and_frees_one_per_settlement() -> None:
    recorder = Recorder()
    first, second = recorder.deliver(1), recorder.deliver(2)
    assert recorder.credit.available == 0
    waiting = asyncio.create_task(recorder.credit.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    first.ack()
    await asyncio.wait_for(waiting, 1)
    assert recorder.credit.available == 1
    second.nack()
    assert recorder.applied == [("m1", Outcome.ACK), ("m2", Outcome.NACK)]


async def test_a_delivery_taken_back_cannot_be_settled_afterwards() -> None:
    recorder = Recorder()
    held, settled = recorder.deliver(1), recorder.deliver(2)
    settled.ack()
    assert [d.id for d in recorder.credit.take_back()] == ["m1"]
    assert recorder.credit.available == 2
    assert held.ack() is False, "a given-back delivery must be void"
    assert recorder.applied == [("m2", Outcome.ACK)]


async def test_the_driver_ignores_a_settlement_for_a_delivery_no_longer_out() -> None:
    recorder = Recorder()
    delivery = recorder.deliver(1)
    recorder.credit.take_back()
    recorder.settle(delivery, Outcome.ACK)  # e.g. queued from a thread before close
    assert recorder.applied == []


async def test_a_held_back_credit_stays_taken_until_repaid() -> None:
    recorder = Recorder()
    first, _second = recorder.deliver(1), recorder.deliver(2)
    first.ack()
    recorder.credit.hold_back()  # the broker does not have the ack yet
    assert recorder.credit.available == 0
    waiting = asyncio.create_task(recorder.credit.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    recorder.credit.repay(1)
    await asyncio.wait_for(waiting, 1)
    assert recorder.credit.available == 1
