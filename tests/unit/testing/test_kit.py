"""relevo.testing: broker apps in memory, join, unit-testing a handler, the pytest fixture."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

import relevo
from relevo.errors import NoDeliveryContext, QueueNotFound
from relevo.testing import delivery, in_memory
from tests.appfiles import write_app

BROKER_APP = """\
- name: broker
  kind: queue.driver.amqp
  url: amqp://guest:guest@127.0.0.1:1/
  publish_timeout: 200ms
- name: tasks
  kind: queue.queue
  driver: broker
  driver_options: {amqp: {max_length: 1000}}
  dead_letter: {queue: failed, max_attempts: 2}
- name: failed
  kind: queue.queue
  driver: broker
- name: handler
  kind: function.python
  source: file://handler.py
- name: worker
  kind: queue.consumer
  queue: tasks
  func: handler
  concurrency: 2
  lifecycle: {auto_start: true}
"""

HANDLER = """\
seen = []

async def main(task):
    seen.append(task["id"])
    if task.get("fail"):
        raise ValueError("asked to fail")
"""


def code_first(handler: Any, namespace: str = "app") -> dict[str, Any]:
    return {
        "version": "1.0",
        "namespace": namespace,
        "entries": [
            {"name": "mem", "kind": "queue.driver.memory"},
            {"name": "tasks", "kind": "queue.queue", "driver": "mem"},
            {"name": "handler", "kind": "function.python", "handler": handler},
            {"name": "worker", "kind": "queue.consumer", "queue": "tasks", "func": "handler",
             "lifecycle": {"auto_start": True}},
        ],
    }


async def test_a_broker_application_runs_in_memory_with_its_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_app(tmp_path, BROKER_APP, handler__py=HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "handler", raising=False)
    import handler as handler_module  # type: ignore[import-not-found]  # the app shares it

    monkeypatch.setattr(handler_module, "seen", [])
    async with in_memory(path) as app:  # the broker URL points nowhere: no broker is used
        await app.publish("app:tasks", {"id": 1})
        await app.publish("app:tasks", {"id": 2, "fail": True})
        await app.join()
        failed = await app.info("app:failed")
        assert failed["ready"] == 1
        assert (await app.info("app:tasks"))["message_count"] == 0
    assert sorted(handler_module.seen) == [1, 2, 2]


async def test_in_memory_keeps_a_queue_bound(tmp_path: Path) -> None:
    path = write_app(tmp_path, BROKER_APP.replace("auto_start: true", "auto_start: false"),
                     handler__py=HANDLER)
    async with in_memory(path) as app:
        await app.publish_batch("app:tasks", range(1000))
        with pytest.raises(relevo.errors.QueueFull):
            async with asyncio.timeout(10):
                await app.publish("app:tasks", 1001)


async def test_a_code_first_application_takes_the_handler_itself() -> None:
    seen: list[Any] = []

    async def handler(task: Any) -> None:
        seen.append(task)

    async with relevo.load(code_first(handler)) as app:
        await app.publish("app:tasks", {"id": 7})
        await app.join("app:tasks")
    assert seen == [{"id": 7}]


def test_a_list_of_mappings_is_one_application() -> None:
    app = relevo.load([code_first(print, "one"), code_first(print, "two")])
    assert {"one:tasks", "two:tasks"} <= set(app.registry.entries)


def test_a_mapping_error_names_dict_the_entry_and_the_field() -> None:
    document = code_first(print)
    document["entries"][2] = {"name": "handler", "kind": "function.python", "source": print}
    with pytest.raises(relevo.errors.ConfigError) as caught:
        relevo.load(document)
    assert "<dict>: app:handler: source: must be a string; a callable goes in 'handler'" in str(
        caught.value
    )
    document["entries"][2] = {"name": "handler", "kind": "function.python", "handler": 42}
    with pytest.raises(relevo.errors.ConfigError) as caught:
        relevo.load(document)
    assert "<dict>: app:handler: handler: must be 'package.module:callable'" in str(caught.value)


async def test_join_names_what_is_left_when_it_times_out() -> None:
    release = asyncio.Event()

    async def handler(task: Any) -> None:
        await release.wait()

    async with relevo.load(code_first(handler)) as app:
        await app.publish("app:tasks", {"id": 1})
        with pytest.raises(TimeoutError, match="app:tasks"):
            await app.join(timeout=0.2)
        release.set()
        await app.join()
        with pytest.raises(QueueNotFound):
            await app.join("app:nope")


def test_a_handler_is_unit_tested_with_a_delivery_of_its_own() -> None:
    def handler(task: dict[str, Any]) -> str:
        message = relevo.message()
        if message.attempts > 2:
            message.nack("too many tries")
        return f"{task['id']}:{message.header('tenant')}:{message.attempts}"

    with delivery({"id": 3}, headers={"tenant": "acme"}) as first:
        assert handler({"id": 3}) == "3:acme:1"
    assert first.outcome is None
    with delivery({"id": 3}, attempts=3) as third:
        handler({"id": 3})
    assert third.outcome == "nack"
    with pytest.raises(NoDeliveryContext):
        relevo.message()


def test_a_test_delivery_refuses_reserved_headers() -> None:
    with pytest.raises(relevo.errors.PublishError), delivery({}, headers={"x_mine": 1}):
        pass


SEEN: list[Any] = []


async def _remember(task: Any) -> None:
    SEEN.append(task)


@pytest.mark.relevo_app(code_first(_remember))
async def test_the_relevo_app_fixture_starts_the_marked_application(relevo_app: Any) -> None:
    await relevo_app.publish("app:tasks", {"id": 11})
    await relevo_app.join()
    assert relevo_app.status("app:worker") == "running"
    assert {"id": 11} in SEEN


async def test_a_one_hour_retry_is_tested_by_moving_the_clock() -> None:
    calls: list[float] = []

    async def handler(task: Any) -> None:
        calls.append(app.clock.time())
        if len(calls) == 1:
            raise relevo.Retry("1h")

    document = code_first(handler)
    app = in_memory(document)
    async with app:
        start = app.clock.time()
        await app.publish("app:tasks", {"id": 1})
        await app.join()
        app.clock.advance(3599)
        await app.join()
        assert len(calls) == 1, "not a second early"
        assert (await app.info("app:tasks"))["delayed"] == 1
        app.clock.advance(1)
        await app.join()
    assert calls == [start, start + 3600]


async def test_only_an_in_memory_application_can_move_its_clock() -> None:
    async with relevo.load(code_first(print)) as app:
        with pytest.raises(relevo.errors.RelevoError, match="in_memory"):
            app.clock.advance(1)
    with pytest.raises(ValueError, match="forward"):
        in_memory(code_first(print)).clock.advance(-1)


def test_a_test_delivery_records_a_delayed_nack() -> None:
    with delivery({"id": 1}) as d:
        assert relevo.message().nack("busy", delay=30)
        assert not relevo.message().ack(), "settling is single-shot"
    assert d.outcome == "nack"
    assert d.due is not None
    assert d.due - relevo.clock.now() == pytest.approx(30, abs=5)
