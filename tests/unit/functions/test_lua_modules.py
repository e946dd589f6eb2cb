"""The Lua modules: require rules, json, logger, time, queue (publish, info, message)."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest

from relevo.context import current_delivery
from relevo.functions.lua.errors import LuaError
from relevo.message import Outcome
from tests.unit.functions.conftest import FakeRuntime, MakeLua, handle, make_delivery


async def test_only_listed_modules_can_be_required(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        return function(name)
          local ok, err = pcall(require, name)
          return ok and "loaded" or err
        end
        """, modules=["json"])
    assert await handle(fn, "json") == "loaded"
    refused = await handle(fn, "queue")
    assert refused.endswith("module 'queue' is not available (this function's modules: json)")
    assert "not available" in await handle(fn, "os")


async def test_a_module_outside_the_list_fails_at_load_when_required_at_top(
    make_lua: MakeLua,
) -> None:
    with pytest.raises(Exception, match="module 'time' is not available"):
        await make_lua("local time = require('time') return function() end", modules=[])


# json ----------------------------------------------------------------------------------


async def test_json_decode_of_a_decoded_value_returns_it_unchanged(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local json = require("json")
        return function(body) return rawequal(json.decode(body), body) end
        """)
    assert await handle(fn, {"id": 1}) is True
    assert await handle(fn, [1, 2]) is True
    assert await handle(fn, 7) is True


async def test_json_decode_and_encode_text(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local json = require("json")
        return function(body)
          local data = json.decode(body)
          data.seen = true
          return json.encode(data)
        end
        """)
    encoded = await handle(fn, '{"id": "t-1", "tags": [], "n": 2}')
    assert orjson.loads(encoded) == {"id": "t-1", "tags": [], "n": 2, "seen": True}


async def test_json_decode_of_bad_text_returns_nil_and_an_error(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local json = require("json")
        return function(body)
          local data, err = json.decode(body)
          return {data == nil, err}
        end
        """)
    is_nil, err = await handle(fn, "{not json")
    assert is_nil is True
    assert err.startswith("json.decode: ")


async def test_json_null_and_array_encode_as_null_and_empty_list(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local json = require("json")
        return function()
          return json.encode({a = json.null, b = json.array(), c = {}, d = {json.null, 1}})
        end
        """)
    assert orjson.loads(await handle(fn, None)) == {"a": None, "b": [], "c": {}, "d": [None, 1]}


async def test_json_encode_of_a_function_returns_nil_and_an_error(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local json = require("json")
        return function() return {json.encode({f = print})} end
        """)
    result = await handle(fn, None)
    assert result == {2: "json.encode: a Lua function cannot leave Lua"}


# logger --------------------------------------------------------------------------------


async def test_logger_levels_fields_and_both_call_styles(
    make_lua: MakeLua, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="relevo.lua")
    fn = await make_lua("""\
        local logger = require("logger")
        return function()
          logger.debug("d")
          logger.info("i", {task_id = "t-1"})
          logger:warn("w", {n = 2})
          logger:error("e")
          print("p", 1)
        end
        """)
    await handle(fn, None)
    seen = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert seen == [
        ("relevo.lua.app:fn", logging.DEBUG, "d"),
        ("relevo.lua.app:fn", logging.INFO, "i task_id=t-1"),
        ("relevo.lua.app:fn", logging.WARNING, "w n=2"),
        ("relevo.lua.app:fn", logging.ERROR, "e"),
        ("relevo.lua.app:fn", logging.INFO, "p\t1"),
    ]
    assert caplog.records[1].__dict__["lua_fields"] == {"task_id": "t-1"}


async def test_logger_skips_disabled_levels(
    make_lua: MakeLua, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relevo.lua")
    fn = await make_lua("local l = require('logger') return function() l.info('quiet') end")
    await handle(fn, None)
    assert caplog.records == []


# time ----------------------------------------------------------------------------------


async def test_time_now_is_epoch_seconds_as_a_float(make_lua: MakeLua) -> None:
    fn = await make_lua("local time = require('time') return function() return time.now() end")
    before = time.time()
    now = await handle(fn, None)
    assert isinstance(now, float)
    assert before <= now <= time.time()


async def test_time_sleep_yields_so_sleeping_workers_overlap(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local time = require("time")
        return function(d) time.sleep(d) return true end
        """, workers=4)
    started = time.monotonic()
    results = await asyncio.gather(*(handle(fn, "100ms") for _ in range(4)), handle(fn, 0.1))
    elapsed = time.monotonic() - started
    assert results == [True] * 5
    assert 0.1 <= elapsed < 0.18  # five sleeps of 100 ms overlapped, not 500 ms in a row


async def test_time_sleep_keeps_the_event_loop_free(make_lua: MakeLua) -> None:
    fn = await make_lua("local t = require('time') return function() t.sleep(0.1) end")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.ensure_future(ticker())
    await handle(fn, None)
    tick_task.cancel()
    assert ticks >= 5


async def test_time_sleep_with_a_bad_duration_raises(make_lua: MakeLua) -> None:
    fn = await make_lua("local t = require('time') return function() t.sleep('soon') end")
    with pytest.raises(LuaError, match=r"handler0\.lua:1: time\.sleep: expected a duration"):
        await handle(fn, None)


async def test_sleep_inside_a_user_coroutine_still_waits_on_the_loop(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local time = require("time")
        return function()
          local gen = coroutine.wrap(function()
            for i = 1, 3 do
              time.sleep(0.01)
              coroutine.yield(i)
            end
          end)
          return {gen(), gen(), gen()}
        end
        """)
    assert await handle(fn, None) == [1, 2, 3]


# queue ---------------------------------------------------------------------------------


async def test_queue_publish_returns_true_and_converts_data_and_headers(
    make_lua: MakeLua, fake_runtime: FakeRuntime
) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        return function(payload)
          return {queue.publish("app.queue:tasks", {id = "task-123", action = "process",
                                                   data = payload}, {correlation_id = "c-1"})}
        end
        """)
    assert await handle(fn, [1, 2], runtime=fake_runtime) == [True]
    assert fake_runtime.published == [
        ("app.queue:tasks", {"id": "task-123", "action": "process", "data": [1, 2]},
         {"correlation_id": "c-1"})
    ]


async def test_queue_publish_failures_return_nil_and_an_error(
    make_lua: MakeLua, fake_runtime: FakeRuntime
) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        return function(q)
          local ok, err = queue.publish(q, {x = 1})
          return {ok == nil, err}
        end
        """)
    assert await handle(fn, "app:missing", runtime=fake_runtime) == [
        True, "queue.publish: no queue 'app:missing'"]
    no_app = await handle(fn, "app:tasks", runtime=None)
    assert no_app[1].startswith("queue.publish: no relevo app is running")


async def test_queue_info_returns_the_counts_as_a_table(
    make_lua: MakeLua, fake_runtime: FakeRuntime
) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        return function(q) return {queue.info(q)} end
        """)
    assert await handle(fn, "app:tasks", runtime=fake_runtime) == [
        {"message_count": 3, "ready": 2, "in_flight": 1, "consumer_count": 1}]
    assert await handle(fn, "app:missing", runtime=fake_runtime) == {
        2: "queue.info: no queue 'app:missing'"}


async def test_queue_message_reads_the_current_delivery(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        return function()
          local msg = queue.message()
          return {id = msg:id(), trace = msg:header("correlation_id"), absent = msg:header("x"),
                  headers = msg:headers(), attempts = msg:attempts()}
        end
        """)
    delivery = make_delivery({"correlation_id": "c-9", "n": 2, "f": 0.5, "b": True}, attempts=3)
    assert await handle(fn, None, delivery) == {
        "id": "msg-1", "trace": "c-9", "attempts": 3,
        "headers": {"correlation_id": "c-9", "n": 2, "f": 0.5, "b": True},
    }


@pytest.mark.parametrize(("first", "outcome"), [("ack", Outcome.ACK), ("nack", Outcome.NACK)])
async def test_message_settles_once_and_reports_false_after(
    make_lua: MakeLua, first: str, outcome: Outcome
) -> None:
    fn = await make_lua(f"""\
        local queue = require("queue")
        return function()
          local msg = queue.message()
          local a = msg:{first}()
          local b, err = msg:ack()
          local c, err2 = msg:nack()
          return {{a, b, err, c, err2}}
        end
        """)
    delivery = make_delivery()
    result = await handle(fn, None, delivery)
    assert result == [True, False, "message already settled", False, "message already settled"]
    assert delivery.settler.outcomes == [outcome]  # type: ignore[attr-defined]
    assert delivery.ack() is False  # the worker's own settle after the handler does nothing


async def test_queue_message_outside_a_handler_returns_nil_and_an_error(
    make_lua: MakeLua,
) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        return function() return {queue.message()} end
        """)
    assert current_delivery.get() is None
    assert fn.handler(None) == {2: "queue.message() is only available inside a handler"}
