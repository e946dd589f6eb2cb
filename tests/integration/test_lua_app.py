"""The original documentation's application with its Lua handler, end to end: YAML -> App ->
publish -> Lua handler -> ack, nack and redelivery, dead letter, waits and publishes."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

import relevo
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.integration import handlers
from tests.waiting import queue_holds, wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "lua"
TASKS = "app.queue:tasks"


def handled(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    """The fields of every Lua log line with this message, in order."""
    return [r.lua_fields for r in caplog.records  # type: ignore[attr-defined]
            if r.name.startswith("relevo.lua") and r.getMessage().split(" ")[0] == message]


async def test_the_documented_application_runs_as_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relevo.lua")
    async with relevo.load(EXAMPLE / "app.yaml") as app:
        await app.publish_batch(TASKS, [{"id": f"task-{n}", "action": "process"}
                                        for n in range(40)])
        await app.publish(TASKS, '{"id": "as-text", "action": "process"}')  # a JSON string
        await queue_holds(app, TASKS, 0)
    seen = sorted(str(fields["task_id"]) for fields in handled(caplog, "Procesando"))
    assert seen == sorted([f"task-{n}" for n in range(40)] + ["as-text"])


BROKERS = {
    "redis": ("127.0.0.1", 6379, "url: redis://127.0.0.1:6379/0"),
    "amqp": ("127.0.0.1", 5672, "url: amqp://guest:guest@127.0.0.1:5672/"),
}
CLEANUP = {  # queue options that leave nothing behind on the broker
    "redis": "",
    "amqp": "driver_options: {amqp: {durable: false, auto_delete: true}}",
}


@pytest.mark.broker
@pytest.mark.parametrize("broker", sorted(BROKERS))
async def test_the_documented_handler_runs_on_a_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broker: str
) -> None:
    host, port, url = BROKERS[broker]
    require_service(broker, host, port)
    caplog.set_level(logging.INFO, logger="relevo.lua")
    name = f"lua_tasks_{uuid.uuid4().hex[:8]}"
    path = write_app(tmp_path, f"""\
        - name: broker
          kind: queue.driver.{broker}
          {url}
        - name: tasks
          kind: queue.queue
          driver: broker
          queue_name: {name}
          {CLEANUP[broker]}
        - name: task_handler
          kind: function.lua
          source: file://{EXAMPLE / "task_handler.lua"}
          modules: [json, logger]
        - name: task_consumer
          kind: queue.consumer
          queue: tasks
          func: task_handler
          concurrency: 4
          prefetch: 20
          lifecycle: {{auto_start: true}}
        """, namespace="app.queue")
    async with relevo.load(path) as app:
        await app.publish_batch(TASKS, [{"id": f"task-{n}"} for n in range(20)])
        await wait_until(lambda: len(handled(caplog, "Procesando")) >= 20, timeout_s=15,
                         what="20 tasks handled")
        await queue_holds(app, TASKS, 0)
    if broker == "redis":
        async with Redis.from_url("redis://127.0.0.1:6379/0") as client:
            await client.delete(f"relevo:{name}")
    seen = sorted(str(fields["task_id"]) for fields in handled(caplog, "Procesando"))
    assert seen == sorted(f"task-{n}" for n in range(20))


def lua_app(tmp_path: Path, handler: str, *, modules: str = "[json, logger, queue, time]",
            concurrency: int = 4, dead_letter: str = "", limits: str = "") -> Path:
    return write_app(tmp_path, f"""\
        - name: mem
          kind: queue.driver.memory
        - name: tasks
          kind: queue.queue
          driver: mem
        {dead_letter}
        - name: dead
          kind: queue.queue
          driver: mem
        - name: done
          kind: queue.queue
          driver: mem
        - name: task_handler
          kind: function.lua
          source: file://handler.lua
          modules: {modules}
          {limits}
        - name: task_consumer
          kind: queue.consumer
          queue: tasks
          func: task_handler
          concurrency: {concurrency}
          prefetch: 20
          lifecycle: {{auto_start: true}}
        - name: recorder
          kind: function.python
          handler: tests.integration.handlers:record
        - name: reader
          kind: queue.consumer
          queue: done
          func: recorder
        - name: dead_reader
          kind: queue.consumer
          queue: dead
          func: recorder
        """, handler__lua=handler)


@pytest.mark.parametrize("limits", ["", "run_in_thread: true"], ids=["on the loop", "threads"])
async def test_a_lua_error_nacks_and_the_message_is_redelivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limits: str
) -> None:
    caplog.set_level(logging.INFO, logger="relevo.lua")
    path = lua_app(tmp_path, """\
        local logger = require("logger")
        local queue = require("queue")
        return function(body)
          local attempts = queue.message():attempts()
          logger.info("attempt", {id = body.id, attempts = attempts})
          if attempts < 3 then error("transient failure " .. attempts) end
          return true
        end
        """, limits=limits)
    async with relevo.load(path) as app:
        await app.publish("app:tasks", {"id": "t-1"})
        await wait_until(lambda: len(handled(caplog, "attempt")) == 3, what="three attempts")
        await queue_holds(app, "app:tasks", 0)
    assert [f["attempts"] for f in handled(caplog, "attempt")] == [1, 2, 3]
    failures = [r for r in caplog.records if r.name == "relevo.consumer"]
    assert "(attempt 1): LuaError: handler.lua:6: transient failure 1" in failures[0].getMessage()
    assert failures[0].exc_info is None  # the Lua reason names file and line, no Python trace


async def test_a_refused_task_is_retried_then_dead_lettered_with_the_lua_error(
    tmp_path: Path,
) -> None:
    path = lua_app(tmp_path, (EXAMPLE / "task_handler.lua").read_text(),
                   dead_letter="  dead_letter: {queue: dead, max_attempts: 2}")
    async with relevo.load(path) as app:
        await app.publish("app:tasks", {"id": "t-9", "action": "fail"})
        await queue_holds(app, "app:dead", 1)
        await app.start("app:dead_reader")
        await wait_until(lambda: len(handlers.state.calls) == 1, what="dead letter read")
    dead = handlers.state.calls[0]
    assert dead.body == {"id": "t-9", "action": "fail"}
    assert dead.headers["x_dead_letter_reason"] == "LuaHandlerError: cannot process task t-9"
    assert dead.headers["attempts"] == 2


async def test_lua_workers_overlap_their_waits_and_publish_onwards(tmp_path: Path) -> None:
    path = lua_app(tmp_path, """\
        local queue = require("queue")
        local time = require("time")
        return function(body)
          time.sleep("100ms")
          local ok, err = queue.publish("app:done", {id = body.id, seen_by = "lua"},
                                        {correlation_id = "c-" .. body.id})
          if not ok then return nil, err end
          return true
        end
        """, concurrency=4)
    async with relevo.load(path) as app:
        await app.start("app:reader")
        started = time.monotonic()
        await app.publish_batch("app:tasks", [{"id": str(n)} for n in range(8)])
        await wait_until(lambda: len(handlers.state.calls) == 8, what="8 onward messages")
        elapsed = time.monotonic() - started
        await queue_holds(app, "app:tasks", 0)
    assert elapsed < 0.6  # 8 sleeps of 100 ms over 4 workers: two rounds, not eight
    bodies = sorted(handlers.state.calls, key=lambda c: int(c.body["id"]))
    assert [c.body for c in bodies] == [{"id": str(n), "seen_by": "lua"} for n in range(8)]
    assert [c.headers["correlation_id"] for c in bodies] == [f"c-{n}" for n in range(8)]


async def test_a_runaway_lua_handler_is_nacked_and_the_others_keep_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relevo.lua")
    path = lua_app(tmp_path, """\
        local logger = require("logger")
        return function(body)
          if body.spin then while true do end end
          logger.info("ok", {id = body.id})
        end
        """, dead_letter="  dead_letter: {queue: dead, max_attempts: 1}",
        limits="max_blocking: 50ms")
    async with relevo.load(path) as app:
        await app.publish("app:tasks", {"id": "spin", "spin": True})
        await app.publish_batch("app:tasks", [{"id": str(n)} for n in range(10)])
        await wait_until(lambda: len(handled(caplog, "ok")) == 10, what="the other tasks")
        await queue_holds(app, "app:dead", 1)
        await app.start("app:dead_reader")
        await wait_until(lambda: len(handlers.state.calls) == 1, what="dead letter read")
    reason = handlers.state.calls[0].headers["x_dead_letter_reason"]
    assert reason.startswith("LuaLimitExceeded: handler.lua:3: max_blocking (0.05s")
