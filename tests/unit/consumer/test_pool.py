"""The worker pool without a broker: what each handler result asks of the driver, and
how the pool stops."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from relevo import clock
from relevo.consumer.pool import WorkerPool
from relevo.control import Reject, Retry
from relevo.message import Outcome
from tests.unit.settlers import RecordingSettler
from tests.waiting import wait_until


def pool(handler: Any, concurrency: int = 1, auto_ack: bool = False) -> WorkerPool:
    return WorkerPool("test-consumer", "test-queue", handler, wrapped=None, meter=None,
                      ack_counter=None, decode=json.loads, concurrency=concurrency,
                      auto_ack=auto_ack, runtime=None)


async def run(handler: Any, bodies: dict[str, bytes]) -> RecordingSettler:
    """Hand each body to a started pool; return once every delivery is settled."""
    settler = RecordingSettler()
    workers = pool(handler)
    workers.start()
    for id, body in bodies.items():
        workers.buffer.put(settler.delivery(id, body))
    await wait_until(lambda: len(settler.outcomes) == len(bodies), 5, "every settlement")
    assert await workers.stop(1.0)
    return settler


async def test_each_handler_result_settles_its_delivery_as_the_contract_says() -> None:
    async def handler(payload: dict[str, str]) -> Any:
        match payload["do"]:
            case "value":
                return {"fine": 1}
            case "false":
                return False
            case "raise":
                raise ValueError("boom")
            case "return-error":
                return ValueError("soft")
            case "none":
                return None

    bodies = {name: json.dumps({"do": name}).encode()
              for name in ("value", "false", "raise", "return-error", "none")}
    settler = await run(handler, bodies)
    assert sorted((i, o) for i, o, _ in settler.outcomes) == [
        ("false", Outcome.NACK), ("none", Outcome.ACK), ("raise", Outcome.NACK),
        ("return-error", Outcome.NACK), ("value", Outcome.ACK),
    ]


async def test_a_retry_nacks_with_a_due_time_and_a_reject_is_acked_away() -> None:
    async def handler(payload: dict[str, str]) -> Any:
        if payload["do"] == "retry":
            raise Retry("30s")
        raise Reject("bad input")

    before = clock.now()
    settler = await run(handler, {"retry": b'{"do": "retry"}', "reject": b'{"do": "reject"}'})
    outcome = {i: (o, due) for i, o, due in settler.outcomes}
    assert outcome["reject"] == (Outcome.ACK, None), "no dead letter: dropped"
    retried, due = outcome["retry"]
    assert retried is Outcome.NACK
    assert due is not None
    assert due >= before + 30


async def test_an_undecodable_body_is_nacked_without_calling_the_handler() -> None:
    called: list[Any] = []

    async def handler(payload: Any) -> None:
        called.append(payload)

    settler = await run(handler, {"bad": b"{not json", "good": b"1"})
    assert sorted((i, o) for i, o, _ in settler.outcomes) == [
        ("bad", Outcome.NACK), ("good", Outcome.ACK)]
    assert called == [1]


async def test_auto_ack_settles_before_the_handler_runs_and_its_failure_changes_nothing() -> None:
    settler = RecordingSettler()
    seen: list[int] = []

    async def handler(payload: Any) -> None:
        seen.append(len(settler.outcomes))
        raise ValueError("too late to nack")

    workers = pool(handler, auto_ack=True)
    workers.start()
    workers.buffer.put(settler.delivery("a"))
    await wait_until(lambda: seen == [1], 5, "the handler")
    assert await workers.stop(1.0)
    assert [(i, o) for i, o, _ in settler.outcomes] == [("a", Outcome.ACK)]


async def test_stop_waits_for_running_handlers_and_leaves_buffered_ones_to_take() -> None:
    settler = RecordingSettler()
    release = asyncio.Event()
    started: list[str] = []

    async def handler(payload: Any) -> None:
        started.append("x")
        await release.wait()

    workers = pool(handler, concurrency=1)
    workers.start()
    for id in ("a", "b", "c"):
        workers.buffer.put(settler.delivery(id))
    await wait_until(lambda: started == ["x"], 5, "the first handler")
    assert workers.held == 3
    assert [d.id for d in workers.take_buffered()] == ["b", "c"]
    stopping = asyncio.create_task(workers.stop(5.0))
    await asyncio.sleep(0)
    assert not stopping.done(), "a running handler is waited for"
    release.set()
    assert await stopping is True
    assert [(i, o) for i, o, _ in settler.outcomes] == [("a", Outcome.ACK)]


async def test_stop_cancels_handlers_still_running_at_the_timeout_and_says_so() -> None:
    settler = RecordingSettler()

    async def handler(payload: Any) -> None:
        await asyncio.Event().wait()

    workers = pool(handler, concurrency=2)
    workers.start()
    workers.buffer.put(settler.delivery("stuck"))
    await wait_until(lambda: workers.held == 1 and not workers.buffer.items, 5, "a handler")
    assert await workers.stop(0.05) is False
    assert settler.outcomes == [], "an abandoned handler's delivery stays unsettled"


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_idle_means_nothing_buffered_and_every_worker_waiting(concurrency: int) -> None:
    async def handler(payload: Any) -> None:
        return None

    workers = pool(handler, concurrency=concurrency)
    workers.start()
    await wait_until(lambda: workers.idle, 5, "the workers to wait")
    assert workers.held == 0
    assert await workers.stop(1.0)
