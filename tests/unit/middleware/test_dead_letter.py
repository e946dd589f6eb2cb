"""Dead-letter routing without a broker: which failures move, what the copy carries, and
that the original leaves only once the copy is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relevo.message import Delivery, Disposition, Envelope, Failure, Outcome
from relevo.middleware.base import ConsumerScope, Settlement
from relevo.middleware.dead_letter import DeadLetter
from tests.unit.settlers import RecordingSettler


class Target:
    """A dead-letter queue that stores what it is given, or fails, or waits."""

    entry_id = "queue.dlq"

    def __init__(self, fail: bool = False) -> None:
        self.stored: list[Envelope] = []
        self.fail = fail
        self.gate: asyncio.Event | None = None

    async def forward(self, envelopes: Sequence[Envelope]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("dead-letter queue down")
        self.stored.extend(envelopes)


class Passed:
    """The rest of the nack chain: records what the dead-letter step passed on."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, Failure]] = []

    def __call__(self, delivery: Delivery, failure: Failure) -> None:
        self.failures.append((delivery.id, failure))


def scope() -> tuple[ConsumerScope, list[tuple[str, Settlement]]]:
    reports: list[tuple[str, Settlement]] = []
    consumer = ConsumerScope("consumer.c", "queue.work")
    consumer.report = lambda delivery, settlement: reports.append((delivery.id, settlement))
    return consumer, reports


async def test_a_failure_below_max_attempts_passes_on_untouched() -> None:
    settler, target, passed = RecordingSettler(), Target(), Passed()
    middleware = DeadLetter("queue.work", target, max_attempts=3)
    consumer, _ = scope()
    middleware.nack(consumer, settler.delivery("m", attempts=2), Failure("boom"), passed)
    assert [i for i, _ in passed.failures] == ["m"]
    assert not middleware.busy()
    assert (target.stored, settler.outcomes) == ([], [])


async def test_the_last_attempt_moves_a_copy_then_acks_the_original() -> None:
    settler, target, passed = RecordingSettler(), Target(), Passed()
    target.gate = asyncio.Event()
    middleware = DeadLetter("queue.work", target, max_attempts=3)
    consumer, reports = scope()
    delivery = settler.delivery("m", body=b'{"n": 1}', attempts=3, tenant="acme")
    middleware.nack(consumer, delivery, Failure("boom"), passed)
    await asyncio.sleep(0)
    assert middleware.busy()
    assert settler.outcomes == [], "no ack before the copy is stored"
    target.gate.set()
    await middleware.drain()
    (copy,) = target.stored
    assert (copy.id, copy.body, copy.attempts) == ("m", b'{"n": 1}', 2)
    assert copy.headers is not None
    assert copy.headers["tenant"] == "acme"
    assert copy.headers["x_original_queue"] == "queue.work"
    assert copy.headers["x_dead_letter_reason"] == "boom"
    assert copy.headers["attempts"] == 3
    assert settler.outcomes == [("m", Outcome.ACK, None)]
    assert reports == [("m", Settlement(Disposition.DEAD_LETTER, "boom"))]
    assert passed.failures == []


async def test_a_reject_moves_at_once_whatever_the_attempts() -> None:
    settler, target, passed = RecordingSettler(), Target(), Passed()
    middleware = DeadLetter("queue.work", target, max_attempts=10)
    consumer, _ = scope()
    middleware.nack(consumer, settler.delivery("m"), Failure("bad", reject=True), passed)
    await middleware.drain()
    assert [e.id for e in target.stored] == ["m"]
    assert settler.outcomes == [("m", Outcome.ACK, None)]


async def test_a_move_that_fails_redelivers_the_message_and_never_drops_it() -> None:
    settler, target, passed = RecordingSettler(), Target(fail=True), Passed()
    middleware = DeadLetter("queue.work", target, max_attempts=1)
    consumer, reports = scope()
    middleware.nack(consumer, settler.delivery("m"), Failure("bad", reject=True), passed)
    await middleware.drain()
    assert settler.outcomes == [], "the original is not acked"
    ((passed_id, failure),) = passed.failures
    assert passed_id == "m"
    assert failure.reject is False, "passed on as a plain nack"
    assert reports == []
