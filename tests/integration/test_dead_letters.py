"""Dead letters on every driver: peek them, requeue one and then the rest, purge."""

from __future__ import annotations

from pathlib import Path

import pytest

import relevo
from relevo.message import Envelope
from tests.integration import handlers
from tests.integration.test_every_driver import app_on, driver_yaml  # noqa: F401 (fixture)
from tests.waiting import queue_holds, wait_until

pytestmark = pytest.mark.broker


def handled(message_id: str) -> bool:
    return any(c.id == message_id and handlers.state.fixed for c in handlers.state.calls[-50:])


async def test_dead_letters_are_peeked_requeued_one_then_all_and_handled(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "fails_until_fixed")) as app:
        ids = [await app.publish("app:tasks", {"n": n}, headers={"k": n}) for n in range(3)]
        await queue_holds(app, "app:dead", 3)
        letters = await app.peek("app:dead", limit=10)
        assert sorted(m["id"] for m in letters) == sorted(ids)
        first = letters[0]
        n = ids.index(first["id"])
        assert first["body"] == {"n": n}
        assert first["attempts"] == 2
        assert first["headers"]["k"] == n
        assert first["headers"]["x_original_queue"] == "app:tasks"
        assert "not fixed" in first["headers"]["x_dead_letter_reason"]

        handlers.state.fixed = True
        seen = len(handlers.state.calls)
        assert await app.requeue("app:dead", ids=[first["id"]]) == 1
        await wait_until(lambda: len(handlers.state.calls) > seen, 10, "the requeued delivery")
        again = handlers.state.calls[seen]
        assert (again.id, again.body, again.attempts) == (first["id"], {"n": n}, 1)
        assert again.headers == {"k": n}
        assert sorted(m["id"] for m in await app.peek("app:dead")) == sorted(
            i for i in ids if i != first["id"]
        )

        assert await app.requeue("app:dead") == 2
        await wait_until(lambda: len(handlers.state.calls) >= seen + 3, 10, "the other two")
        await queue_holds(app, "app:dead", 0)
        await queue_holds(app, "app:tasks", 0)


async def test_a_dead_letter_whose_queue_is_gone_is_refused_with_the_reason_and_kept(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        await app.stop("app:worker")
        dead = app.queues["app:dead"]
        await app.peek("app:dead")  # starts the queue
        orphan = Envelope("orphan-1", b'{"a": 1}', {"x_original_queue": "app:gone"}, 1)
        home = Envelope("home-1", b'{"b": 2}', {"x_original_queue": "app:tasks", "h": "v"}, 1)
        await dead.forward([orphan, home])
        report = await app.requeue_report("app:dead")
        assert report.moved == 1
        assert report.refused == {"orphan-1": "its original queue 'app:gone' no longer exists"}
        assert [m["id"] for m in await app.peek("app:dead")] == ["orphan-1"]
        assert [(m["id"], m["headers"], m["attempts"]) for m in await app.peek("app:tasks")] == [
            ("home-1", {"h": "v"}, 1)
        ]
        missing = await app.requeue_report("app:dead", ids=["no-such-id"])
        assert missing.refused == {"no-such-id": "not among the ready dead letters"}


async def test_purge_removes_the_ready_messages_and_says_how_many(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        await app.stop("app:worker")
        await app.publish_batch("app:dead", [{"n": n} for n in range(5)])
        await queue_holds(app, "app:dead", 5)
        assert await app.purge("app:dead") == 5
        await queue_holds(app, "app:dead", 0)
        assert await app.peek("app:dead") == []


async def test_requeue_of_named_messages_starts_behind_a_hint_and_falls_back_to_the_head(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        await app.stop("app:worker")
        await app.peek("app:dead")
        letters = [Envelope(f"h-{n}", b"{}", {"x_original_queue": "app:tasks"}, 1)
                   for n in range(6)]
        await app.queues["app:dead"].forward(letters)
        report = await app.requeue_report("app:dead", ["h-4", "h-1"], after="h-2")
        assert (report.moved, report.refused) == (2, {})
        assert [m["id"] for m in await app.peek("app:dead")] == ["h-0", "h-2", "h-3", "h-5"]
        assert sorted(m["id"] for m in await app.peek("app:tasks")) == ["h-1", "h-4"]
