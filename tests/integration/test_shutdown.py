"""Stopping a consumer loses nothing, waits for running handlers, then gives up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import relevo
from relevo.errors import StopTimeout
from tests.appfiles import write_app
from tests.integration import handlers
from tests.waiting import wait_until, wait_until_async


def gated_app(tmp_path: Path, handler: str, stop_timeout: str, prefetch: int = 5) -> Path:
    return write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:{handler}"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: 1
  prefetch: {prefetch}
  lifecycle: {{auto_start: true, stop_timeout: {stop_timeout}}}
""")


async def counts(app: relevo.App) -> dict[str, int]:
    return await app.info("app:tasks")


async def test_buffered_messages_go_back_at_once_while_the_running_handler_finishes(
    tmp_path: Path,
) -> None:
    async with relevo.load(gated_app(tmp_path, "gated", "5s")) as app:
        await app.publish_batch("app:tasks", [{"n": n} for n in range(5)])
        await wait_until(lambda: handlers.state.running == 1)
        stopping = asyncio.create_task(app.stop("app:worker"))

        async def released() -> bool:
            return (await counts(app))["ready"] == 4

        await wait_until_async(released, what="the 4 buffered messages back in the queue")
        assert not stopping.done(), "stop must wait for the running handler"
        assert app.status("app:worker") == "stopping"
        handlers.state.gate.set()
        await stopping
        assert app.status("app:worker") == "stopped"
        assert await counts(app) == {"message_count": 4, "ready": 4, "in_flight": 0,
                                     "consumer_count": 0, "delayed": 0}
    assert len(handlers.state.calls) == 1


async def test_a_handler_past_stop_timeout_raises_and_its_message_comes_back(
    tmp_path: Path,
) -> None:
    async with relevo.load(gated_app(tmp_path, "gated", "200ms")) as app:
        message_id = await app.publish("app:tasks", {"stuck": True})
        await wait_until(lambda: handlers.state.running == 1)
        with pytest.raises(StopTimeout, match="app:worker"):
            await app.stop("app:worker")
        assert app.status("app:worker") == "failed"
        assert handlers.state.running == 0, "an async handler past the timeout is cancelled"
        assert (await counts(app))["ready"] == 1
        handlers.state.gate.set()
        await app.start("app:worker")
        await wait_until(lambda: len(handlers.state.calls) == 2, what="the redelivery")
        again = handlers.state.calls[1]
        assert (again.id, again.attempts) == (message_id, 2)


async def test_an_abandoned_sync_handler_cannot_settle_its_returned_message(
    tmp_path: Path,
) -> None:
    async with relevo.load(gated_app(tmp_path, "sync_gated", "200ms")) as app:
        await app.publish("app:tasks", {"stuck": "in a thread"})
        await wait_until(lambda: len(handlers.state.calls) == 1)
        with pytest.raises(StopTimeout):
            await app.stop("app:worker")
        assert (await counts(app))["ready"] == 1
        handlers.state.gate.set()  # the abandoned thread now finishes and tries to ack
        await wait_until(lambda: handlers.state.results == [False], what="the late ack")
        assert (await counts(app))["message_count"] == 1


async def test_leaving_the_app_stops_consumers_before_their_queue_and_driver(
    tmp_path: Path,
) -> None:
    app = relevo.load(gated_app(tmp_path, "record", "1s"))
    async with app:
        for entry_id in ("app:mem", "app:tasks", "app:fn", "app:worker"):
            assert app.status(entry_id) == "running"
    assert {app.status(e) for e in ("app:mem", "app:tasks", "app:fn", "app:worker")} == {
        "stopped"}


@pytest.mark.parametrize("handler", ["gated_forward", "sync_gated_forward"])
async def test_handlers_that_publish_while_the_app_closes_still_publish(
    tmp_path: Path, handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bug: App.close() marked the app closed before its consumers had drained, so every
    in-flight handler that published during Ctrl-C failed with "the app is not running"
    and was nacked, which counted against max_attempts."""
    path = write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
- name: next
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:{handler}"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: 4
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
""")
    app = relevo.load(path)
    async with app:
        await app.publish_batch("app:tasks", [{"forward": "app:next"}] * 4)
        await wait_until(lambda: handlers.state.running == 4, what="4 handlers in flight")
        closing = asyncio.create_task(app.close())
        await wait_until(lambda: app.status("app:worker") == "stopping", what="the stop")
        handlers.state.gate.set()
        await closing
    assert len(handlers.state.results) == 4, "every handler published its next message"
    assert all(isinstance(message_id, str) for message_id in handlers.state.results)
    assert [call.attempts for call in handlers.state.calls] == [1, 1, 1, 1]
    assert app.status("app:worker") == "stopped"
    assert app.status("app:next") == "stopped"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
