"""Settle-once: the first ack/nack/release wins, from any thread, exactly once."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from relevo.message import Delivery, Failure, Outcome
from tests.waiting import wait_until


class RecordingSettler:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.outcomes: list[Outcome] = []
        self.threads: list[int] = []

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        self.outcomes.append(outcome)
        self.threads.append(threading.get_ident())


async def test_the_first_settlement_wins_and_later_ones_return_false() -> None:
    settler = RecordingSettler()
    delivery = Delivery(settler, "m1", b"{}", None, 1)
    assert delivery.nack() is True
    assert delivery.ack() is False
    assert delivery.release() is False
    assert settler.outcomes == [Outcome.NACK]
    assert delivery.headers == {}


async def test_racing_threads_settle_exactly_once_on_the_loop_thread() -> None:
    settler = RecordingSettler()
    deliveries = [Delivery(settler, f"m{i}", b"", None, 1) for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        wins = await asyncio.gather(*(
            asyncio.get_running_loop().run_in_executor(pool, d.ack if i % 2 else d.nack)
            for d in deliveries for i in range(4)
        ))
    # settlements from threads run as loop callbacks
    await wait_until(lambda: len(settler.outcomes) >= 200, what="200 settlements")
    assert sum(wins) == 200
    assert len(settler.outcomes) == 200
    assert set(settler.threads) == {threading.get_ident()}


class RecordingHooks:
    observes_ack = False

    def __init__(self) -> None:
        self.failures: list[tuple[str, Failure]] = []

    def ack(self, delivery: Delivery) -> None:
        raise AssertionError("an ack must go straight to the driver when no hook observes it")

    def fail(self, delivery: Delivery, failure: Failure) -> None:
        self.failures.append((delivery.id, failure))


async def test_settle_hooks_replace_the_plain_nack_and_leave_the_ack_alone() -> None:
    settler = RecordingSettler()
    hooks = RecordingHooks()
    failing, acked = Delivery(settler, "m1", b"", None, 3), Delivery(settler, "m2", b"", None, 1)
    failing.hooks = acked.hooks = hooks
    assert failing.nack("boom", delay="2s") is True
    assert acked.ack() is True
    assert hooks.failures == [("m1", Failure("boom", 2.0))]
    assert settler.outcomes == [Outcome.ACK]
