"""YAML -> App -> publish -> handler -> ack / nack / dead letter, on the memory driver."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import relevo
from relevo.errors import NoDeliveryContext, PublishError, QueueFull, QueueNotFound, RelevoError
from tests.appfiles import write_app
from tests.integration import handlers
from tests.waiting import queue_holds, wait_until

H = "tests.integration.handlers"


def app_yaml(tmp_path: Path, handler: str, *, consumer: str = "", queue: str = "",
             extra: str = "") -> Path:
    return write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
{queue}- name: dead
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  handler: "{H}:{handler}"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true}}
{consumer}{extra}""")


async def test_a_published_message_reaches_its_handler_and_is_acked(tmp_path: Path) -> None:
    async with relevo.load(app_yaml(tmp_path, "record")) as app:
        message_id = await app.publish(
            "app:tasks", {"id": "task-123"}, headers={"correlation_id": "c-1", "n": 2, "f": 0.5,
                                                       "b": True})
        await app.join()
        assert len(handlers.state.calls) == 1
    call = handlers.state.calls[0]
    assert (call.body, call.id, call.attempts) == ({"id": "task-123"}, message_id, 1)
    assert call.headers == {"correlation_id": "c-1", "n": 2, "f": 0.5, "b": True}


async def test_a_failing_message_is_retried_then_dead_lettered_with_its_story(
    tmp_path: Path,
) -> None:
    queue = "  dead_letter: {queue: dead, max_attempts: 3}\n"
    reader = """\
- name: dead_fn
  kind: function.python
  handler: "tests.integration.handlers:returns_error"
- name: dead_reader
  kind: queue.consumer
  queue: dead
  func: dead_fn
  auto_ack: true
"""
    async with relevo.load(app_yaml(tmp_path, "record", queue=queue, extra=reader)) as app:
        message_id = await app.publish("app:tasks", {"id": 7, "fail": True}, headers={"k": "v"})
        await app.join()
        assert len(handlers.state.calls) == 3
        assert (await app.info("app:dead"))["message_count"] == 1
        await app.start("app:dead_reader")
        await app.join("app:dead")
        assert len(handlers.state.calls) == 4
    attempts = [c.attempts for c in handlers.state.calls[:3]]
    assert attempts == [1, 2, 3]
    dead = handlers.state.calls[3]
    assert dead.id == message_id
    assert dead.body == {"id": 7, "fail": True}
    assert dead.attempts == 3
    assert dead.headers["k"] == "v"
    assert dead.headers["attempts"] == 3
    assert dead.headers["x_original_queue"] == "app:tasks"
    assert dead.headers["x_dead_letter_reason"] == "ValueError: task 7 failed on purpose"
    assert dead.headers["x_dead_letter_time"].endswith("+00:00")


@pytest.mark.parametrize("handler", ["returns_false", "returns_error"])
async def test_returning_false_or_an_exception_nacks(tmp_path: Path, handler: str) -> None:
    queue = "  dead_letter: {queue: dead, max_attempts: 2}\n"
    async with relevo.load(app_yaml(tmp_path, handler, queue=queue)) as app:
        await app.publish("app:tasks", {"x": 1})
        await app.join()
        assert len(handlers.state.calls) == 2
        dead = await app.info("app:dead")
    assert [c.attempts for c in handlers.state.calls] == [1, 2]
    assert dead["message_count"] == 1


async def test_an_undecodable_body_is_nacked_and_dead_lettered_not_dropped(
    tmp_path: Path,
) -> None:
    queue = "  dead_letter: {queue: dead, max_attempts: 2}\n"
    async with relevo.load(app_yaml(tmp_path, "record", queue=queue)) as app:
        await app.publish("app:tasks", b"{not json")  # bytes pass through the json codec
        await app.publish("app:tasks", {"fine": True})
        await app.join()
        assert len(handlers.state.calls) == 1
        assert (await app.info("app:dead"))["message_count"] == 1
    assert handlers.state.calls[0].body == {"fine": True}


async def test_a_handler_settles_once_and_the_runtime_does_not_settle_again(
    tmp_path: Path,
) -> None:
    async with relevo.load(app_yaml(tmp_path, "settles_itself")) as app:
        await app.publish("app:tasks", {})
        await app.join()
        assert len(handlers.state.results) == 1
    assert handlers.state.results == [(True, False, False)]
    assert len(handlers.state.calls) == 1


async def test_sync_handlers_run_in_threads_with_message_and_publish_sync(
    tmp_path: Path,
) -> None:
    async with relevo.load(app_yaml(tmp_path, "sync_record")) as app:
        await app.publish("app:tasks", {"forward": "app:dead"}, headers={"k": "v"})
        await app.join()
        assert len(handlers.state.results) == 2
        assert (await app.info("app:dead"))["message_count"] == 1
    call = handlers.state.calls[0]
    assert call.thread != threading.main_thread().name
    assert handlers.state.results[0] == ("v", None)
    assert isinstance(handlers.state.results[1], str)


async def test_async_handlers_publish_through_the_running_app(tmp_path: Path) -> None:
    async with relevo.load(app_yaml(tmp_path, "async_forward")) as app:
        await app.publish("app:tasks", {"forward": "app:dead"})
        await wait_until(lambda: len(handlers.state.results) == 1)
        assert (await app.info("app:dead"))["message_count"] == 1


async def test_auto_ack_settles_before_the_handler_so_failures_are_not_retried(
    tmp_path: Path,
) -> None:
    async with relevo.load(app_yaml(tmp_path, "record", consumer="  auto_ack: true\n")) as app:
        await app.publish("app:tasks", {"fail": True})
        await app.join()
        assert len(handlers.state.calls) == 1
    assert len(handlers.state.calls) == 1


@pytest.mark.parametrize(("concurrency", "prefetch", "busy"), [(4, 20, 4), (8, 3, 3)])
async def test_busy_workers_are_bounded_by_concurrency_and_prefetch(
    tmp_path: Path, concurrency: int, prefetch: int, busy: int
) -> None:
    consumer = f"  concurrency: {concurrency}\n  prefetch: {prefetch}\n"
    async with relevo.load(app_yaml(tmp_path, "gated", consumer=consumer)) as app:
        await app.publish_batch("app:tasks", [{"n": n} for n in range(30)])
        await wait_until(lambda: handlers.state.running == busy, what=f"{busy} busy workers")
        stats = await app.info("app:tasks")
        assert stats["in_flight"] == min(prefetch, 30)
        await asyncio.sleep(0.05)  # a window for an over-eager pool to start one more
        assert handlers.state.max_running == busy
        handlers.state.gate.set()
        await queue_holds(app, "app:tasks", 0)
    assert len(handlers.state.calls) == 30


async def test_a_message_published_before_the_consumer_starts_is_handled_later(
    tmp_path: Path,
) -> None:
    path = app_yaml(tmp_path, "record")
    path.write_text(path.read_text().replace("lifecycle: {auto_start: true}", "lifecycle: {}"))
    app = relevo.load(path)
    async with app:
        await app.publish("app:tasks", {"early": True})
        assert app.status("app:worker") == "unknown"
        await app.start("app:worker")
        assert app.status("app:worker") == "running"
        await wait_until(lambda: len(handlers.state.calls) == 1)
        await app.stop("app:worker")
        assert app.status("app:worker") == "stopped"
    assert app.status("app:mem") == "stopped"


async def test_msgpack_bodies_round_trip(tmp_path: Path) -> None:
    queue = "  codec: application/msgpack\n"
    body = {"bytes": b"\x00\xff", "n": 2**40, "list": [1, 2.5, None], "text": "ñ"}
    async with relevo.load(app_yaml(tmp_path, "record", queue=queue)) as app:
        await app.publish("app:tasks", body)
        await wait_until(lambda: len(handlers.state.calls) == 1)
    assert handlers.state.calls[0].body == body


async def test_each_app_has_its_own_memory_store(tmp_path: Path) -> None:
    path = app_yaml(tmp_path, "record")
    path.write_text(path.read_text().replace("lifecycle: {auto_start: true}", "lifecycle: {}"))
    async with relevo.load(path) as first, relevo.load(path) as second:
        await first.publish("app:tasks", {})
        assert (await first.info("app:tasks"))["message_count"] == 1
        assert (await second.info("app:tasks"))["message_count"] == 0


async def test_errors_at_the_edges_are_relevo_errors(tmp_path: Path) -> None:
    with pytest.raises(NoDeliveryContext):
        relevo.message()
    with pytest.raises(RelevoError, match="no relevo app"):
        await relevo.publish("app:tasks", {})
    async with relevo.load(app_yaml(tmp_path, "record")) as app:
        with pytest.raises(QueueNotFound):
            await app.publish("app:nope", {})
        with pytest.raises(QueueNotFound):
            await app.publish("app:fn", {})
        with pytest.raises(PublishError, match="reserved"):
            await app.publish("app:tasks", {}, headers={"x_attempts": 1})
        with pytest.raises(PublishError, match="encode"):
            await app.publish("app:tasks", {"x": object()})
        assert await relevo.publish("app:tasks", {"inside": True})


async def test_a_full_memory_queue_applies_backpressure_then_raises_queue_full(
    tmp_path: Path,
) -> None:
    path = write_app(tmp_path, """\
- name: mem
  kind: queue.driver.memory
  publish_timeout: 200ms
- name: small
  kind: queue.queue
  driver: mem
  driver_options: {memory: {max_length: 2}}
""")
    async with relevo.load(path) as app:
        await app.publish_batch("app:small", [1, 2])
        with pytest.raises(QueueFull):
            await app.publish("app:small", 3)
        assert (await app.info("app:small"))["message_count"] == 2


async def test_a_source_file_handler_without_method_uses_its_only_public_function(
    tmp_path: Path,
) -> None:
    path = write_app(tmp_path, """\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  source: file://work.py
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {auto_start: true}
""", work__py="""\
        from tests.integration import handlers

        def _helper(body):
            return body

        async def handle(body):
            handlers.state.results.append(_helper(body))
        """)
    async with relevo.load(path) as app:
        await app.publish("app:tasks", {"via": "file"})
        await wait_until(lambda: len(handlers.state.results) == 1)
    assert handlers.state.results == [{"via": "file"}]


async def test_publish_sync_on_the_event_loop_refuses_instead_of_deadlocking(
    tmp_path: Path,
) -> None:
    async with relevo.load(app_yaml(tmp_path, "record")):
        with pytest.raises(RelevoError, match="would block the event loop"):
            relevo.publish_sync("app:tasks", {})
