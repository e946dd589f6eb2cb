"""Loading Lua sources and settling by what the handler returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from relevo.consumer.settle import nack_reason
from relevo.control import Retry
from relevo.errors import LoadError, RelevoError
from relevo.functions.lua.errors import LuaError, LuaHandlerError
from relevo.functions.lua.settings import LuaSettings
from tests.unit.functions.conftest import DOCUMENTED_HANDLER, FIXTURES, MakeLua, handle


async def test_the_documented_handler_runs_as_written_on_text_and_on_tables(
    make_lua: MakeLua, caplog: pytest.LogCaptureFixture
) -> None:
    fn = await make_lua(DOCUMENTED_HANDLER, modules=["json", "logger"])
    caplog.set_level("INFO", logger="relevo.lua")

    assert await handle(fn, '{"id": "task-1"}') == {"id": "task-1", "status": "done"}
    assert await handle(fn, {"id": "task-2"}) == {"id": "task-2", "status": "done"}
    failed = await handle(fn, {"id": "task-3", "action": "fail"})

    assert isinstance(failed, LuaHandlerError)
    assert str(failed) == "cannot process task task-3"
    assert nack_reason(failed) == "LuaHandlerError: cannot process task task-3"
    assert [r.getMessage() for r in caplog.records] == [
        "Procesando task_id=task-1", "Procesando task_id=task-2", "Procesando task_id=task-3"]


@pytest.mark.parametrize(
    ("lua_return", "expected"),
    [
        ("return 'ok'", "ok"),
        ("return", None),
        ("return nil", None),
        ("return nil, nil", None),
        ("return true", True),
        ("return 0", 0),
        ("return false", False),
    ],
)
@pytest.mark.parametrize("modules", [["time"], []], ids=["coroutine", "direct"])
async def test_plain_returns_ack_and_false_nacks(
    make_lua: MakeLua, lua_return: str, expected: object, modules: list[str]
) -> None:
    fn = await make_lua(f"return function(body) {lua_return} end", modules=modules)
    result = await handle(fn, None)
    assert result == expected
    assert type(result) is type(expected)
    assert (nack_reason(result) is not None) == (expected is False)


@pytest.mark.parametrize("first", ["nil", "false"])
@pytest.mark.parametrize("modules", [["time"], []], ids=["coroutine", "direct"])
async def test_returning_a_value_and_an_error_nacks_with_the_error(
    make_lua: MakeLua, first: str, modules: list[str]
) -> None:
    fn = await make_lua(f"return function(body) return {first}, 'disk full' end",
                        modules=modules)
    result = await handle(fn, None)
    assert isinstance(result, LuaHandlerError)
    assert str(result) == "disk full"


@pytest.mark.parametrize("modules", [["time"], []], ids=["coroutine", "direct"])
@pytest.mark.parametrize(("delay", "seconds"), [("30", 30.0), ("'5m'", 300.0), ("0.5", 0.5)])
async def test_returning_nil_an_error_and_a_delay_retries_after_the_delay(
    make_lua: MakeLua, modules: list[str], delay: str, seconds: float
) -> None:
    fn = await make_lua(f"return function(body) return nil, 'busy', {delay} end",
                        modules=modules)
    result = await handle(fn, None)
    assert isinstance(result, Retry)
    assert (result.after_s, result.reason) == (seconds, "busy")


async def test_a_bad_retry_delay_from_lua_still_nacks_with_the_error(make_lua: MakeLua) -> None:
    fn = await make_lua("return function(body) return nil, 'busy', 'soon' end")
    result = await handle(fn, None)
    assert isinstance(result, LuaHandlerError)
    assert str(result).startswith("busy (and a bad retry delay:")


async def test_an_error_table_is_kept_as_the_nack_value(make_lua: MakeLua) -> None:
    fn = await make_lua("return function(body) return nil, {code = 7, why = 'busy'} end")
    result = await handle(fn, None)
    assert isinstance(result, LuaHandlerError)
    assert result.value == {"code": 7, "why": "busy"}


@pytest.mark.parametrize("modules", [["time"], []], ids=["coroutine", "direct"])
async def test_error_raises_with_the_lua_file_and_line(
    make_lua: MakeLua, modules: list[str]
) -> None:
    fn = await make_lua("""\
        local function inner(x)
          error("boom " .. x)
        end
        return function(body) inner(body) end
        """, modules=modules)
    with pytest.raises(LuaError, match=r"^handler0\.lua:2: boom 5$") as caught:
        await handle(fn, 5)
    assert isinstance(caught.value, RelevoError)
    assert "handler0.lua:2: in " in caught.value.lua_traceback


async def test_an_error_object_that_is_a_table_is_carried(make_lua: MakeLua) -> None:
    fn = await make_lua("return function(body) error({code = 'E1'}) end")
    with pytest.raises(LuaError) as caught:
        await handle(fn, None)
    assert caught.value.value == {"code": "E1"}
    assert "handler0.lua" in str(caught.value)


@pytest.mark.parametrize("modules", [["time"], []], ids=["coroutine", "direct"])
async def test_a_worker_state_survives_a_handler_error(
    make_lua: MakeLua, modules: list[str]
) -> None:
    fn = await make_lua("""\
        local calls = 0
        return function(body)
          calls = calls + 1
          if body == "fail" then error("asked to fail") end
          return calls
        end
        """, modules=modules, workers=1)
    assert await handle(fn, "ok") == 1
    with pytest.raises(LuaError):
        await handle(fn, "fail")
    assert await handle(fn, "ok") == 3  # same state: the counter kept counting
    assert fn.states_idle == 1


async def test_a_table_chunk_uses_main_by_default_and_method_when_given(
    make_lua: MakeLua,
) -> None:
    main = await make_lua(FIXTURES / "methods.lua")
    shout = await make_lua(FIXTURES / "methods.lua", method="shout")
    assert await handle(main, "x") == "main:x"
    assert await handle(shout, "hey") == "HEY"


async def test_a_missing_method_names_the_functions_there_are(make_lua: MakeLua) -> None:
    with pytest.raises(LoadError, match=r"methods\.lua: .*no function 'nope'.*main, shout"):
        await make_lua(FIXTURES / "methods.lua", method="nope")


async def test_a_syntax_error_fails_load_with_file_and_line(make_lua: MakeLua) -> None:
    with pytest.raises(LoadError, match=r"syntax_error\.lua:3:"):
        await make_lua(FIXTURES / "syntax_error.lua")


async def test_an_error_while_loading_fails_load(make_lua: MakeLua) -> None:
    with pytest.raises(LoadError, match=r"handler0\.lua:1: no config"):
        await make_lua("error('no config')")


async def test_a_chunk_returning_no_function_fails_load(make_lua: MakeLua) -> None:
    with pytest.raises(LoadError, match="must return a function or a table of functions"):
        await make_lua("return 42")


async def test_a_missing_source_file_fails_load(make_lua: MakeLua, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="cannot read Lua source"):
        await make_lua(tmp_path / "absent.lua")


async def test_concurrent_calls_get_their_own_state(make_lua: MakeLua) -> None:
    """Globals are per state; two calls waiting at once never see each other's writes."""
    fn = await make_lua("""\
        local time = require("time")
        return function(body)
          current = body          -- a global, on purpose
          time.sleep(0.05)
          return current
        end
        """, workers=4)
    results = await asyncio.gather(*(handle(fn, n) for n in range(4)))
    assert results == [0, 1, 2, 3]
    assert fn.states_idle == 4


async def test_idle_states_are_capped_at_the_worker_count(make_lua: MakeLua) -> None:
    fn = await make_lua(
        "local time = require('time') return function(b) time.sleep(0.01) end", workers=2
    )
    await asyncio.gather(*(handle(fn, None) for _ in range(6)))
    assert fn.states_idle == 2


async def test_a_cancelled_call_leaves_a_usable_state(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local time = require("time")
        return function(body)
          if body == "slow" then time.sleep(10) end
          return body
        end
        """, workers=1)
    task = asyncio.ensure_future(handle(fn, "slow"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await handle(fn, "fast") == "fast"


async def test_a_bare_yield_lets_the_loop_breathe_in_a_handler_that_can_wait(
    make_lua: MakeLua,
) -> None:
    fn = await make_lua("""\
        return function()
          for i = 1, 3 do coroutine.yield() end
          return "after three yields"
        end
        """, modules=["time"])
    assert await handle(fn, None) == "after three yields"


async def test_a_bare_yield_in_a_handler_that_cannot_wait_is_an_error(make_lua: MakeLua) -> None:
    fn = await make_lua("return function() coroutine.yield() end", modules=["json"])
    with pytest.raises(LuaError, match="yield"):
        await handle(fn, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("source", "handler.lua"), ("source", "file://"), ("modules", ["os"]),
     ("max_blocking", "-1s"), ("max_instructions", 10), ("memory_limit", 1024),
     ("timeout", 0)],
)
def test_bad_settings_are_config_errors(field: str, value: object) -> None:
    settings = {"source": "file:///abs/handler.lua", field: value}
    with pytest.raises(ValidationError):
        LuaSettings.model_validate(settings)


def test_settings_default_to_a_quarter_second_of_blocking_and_no_other_limit() -> None:
    settings = LuaSettings.model_validate({"source": "file:///abs/handler.lua"})
    assert (settings.max_blocking, settings.timeout, settings.max_instructions,
            settings.memory_limit, settings.modules) == (0.25, None, None, None, [])
    assert LuaSettings.model_validate(
        {"source": "file:///abs/handler.lua", "max_blocking": None}).max_blocking is None


async def test_a_chunk_that_waits_at_load_fails_load(make_lua: MakeLua) -> None:
    with pytest.raises(LoadError, match="cannot wait"):
        await make_lua("require('time').sleep(0.01) return function() end")
