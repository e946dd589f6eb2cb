"""Isolation: what handler code cannot reach, and the limits that stop runaway handlers."""

from __future__ import annotations

import asyncio
import time

import pytest

from relevo.errors import LoadError
from relevo.functions.lua.errors import LuaLimitExceeded
from tests.unit.functions.conftest import MakeLua, handle

PROBE = """\
return function(expr)
  local chunk = load("return " .. expr)
  local ok, value = pcall(chunk)
  if not ok then return "error: " .. tostring(value) end
  return type(value)
end
"""


@pytest.mark.parametrize(
    "expr",
    ["os", "io", "debug", "package", "dofile", "loadfile", "python", "string.dump",
     "('').dump", "require", "_G.os", "collectgarbage"],
)
async def test_dangerous_globals_are_absent(make_lua: MakeLua, expr: str) -> None:
    fn = await make_lua(PROBE)
    expected = "function" if expr in ("require", "collectgarbage") else "nil"
    assert await handle(fn, expr) == expected


async def test_require_never_loads_files(make_lua: MakeLua, tmp_path: object) -> None:
    fn = await make_lua("return function(n) return select(2, pcall(require, n)) end")
    for name in ("handler0", "os", "io", "debug", "./handler0.lua"):
        assert "is not available" in await handle(fn, name)


async def test_bytecode_cannot_be_loaded(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        return function()
          local f, err = load("\\27Lua", "x", "b")
          local g, err2 = load("\\27LuaT\\0", "x")
          return {f == nil, err, g == nil}
        end
        """)
    refused, err, refused_default = await handle(fn, None)
    assert refused is True
    assert err == "only text chunks can be loaded"
    assert refused_default is True


async def test_loaded_code_runs_in_the_sandbox_too(make_lua: MakeLua) -> None:
    fn = await make_lua("return function() return load('return os == nil and io == nil')() end")
    assert await handle(fn, None) is True


async def test_no_python_object_is_reachable_from_globals(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        local seen = {}
        local function walk(t, depth)
          if depth > 3 or seen[t] then return end
          seen[t] = true
          for k, v in pairs(t) do
            if type(v) == "userdata" then error("userdata at " .. tostring(k)) end
            if type(v) == "table" then walk(v, depth + 1) end
          end
        end
        return function()
          walk(_G, 0)
          for _, name in ipairs({"json", "logger", "queue", "time"}) do walk(require(name), 0) end
          return getmetatable("")
        end
        """)
    assert await handle(fn, None) is False  # the string metatable is sealed as well


async def test_collectgarbage_is_limited_to_count(make_lua: MakeLua) -> None:
    fn = await make_lua("return function(opt) return {pcall(collectgarbage, opt)} end")
    ok, count = await handle(fn, "count")
    assert ok is True
    assert count > 0
    refused = await handle(fn, "stop")
    assert refused[0] is False


# limits ----------------------------------------------------------------------------------

# A handler that can wait runs as a coroutine; one that cannot is called directly. Both
# must be stopped the same way.
BOTH_MODES = pytest.mark.parametrize(
    "modules", [["json", "logger", "queue", "time"], ["json", "logger"]],
    ids=["coroutine", "direct"],
)

RUNAWAY = """\
local calls = 0
return function(kind)
  calls = calls + 1
  if kind == "spin" then
    while true do end
  elseif kind == "stubborn" then
    while true do pcall(function() while true do end end) end
  end
  return calls
end
"""


@BOTH_MODES
async def test_a_runaway_loop_is_stopped_by_max_blocking_and_the_state_replaced(
    make_lua: MakeLua, modules: list[str],
) -> None:
    fn = await make_lua(RUNAWAY, modules=modules, workers=1, max_blocking="50ms")
    assert await handle(fn, "ok") == 1
    started = time.monotonic()
    with pytest.raises(LuaLimitExceeded, match=r"handler0\.lua:5: max_blocking \(0\.05s"):
        await handle(fn, "spin")
    assert time.monotonic() - started < 0.5
    assert await handle(fn, "ok") == 1  # a fresh state: the counter started over


@BOTH_MODES
async def test_pcall_cannot_swallow_a_limit(make_lua: MakeLua, modules: list[str]) -> None:
    fn = await make_lua(RUNAWAY, modules=modules, max_blocking="50ms")
    with pytest.raises(LuaLimitExceeded, match="max_blocking"):
        await handle(fn, "stubborn")


@BOTH_MODES
async def test_max_instructions_stops_a_loop(make_lua: MakeLua, modules: list[str]) -> None:
    fn = await make_lua(RUNAWAY, modules=modules, max_instructions=100_000, max_blocking=None)
    with pytest.raises(LuaLimitExceeded, match="max_instructions exceeded"):
        await handle(fn, "spin")


@BOTH_MODES
async def test_max_instructions_counts_per_call(make_lua: MakeLua, modules: list[str]) -> None:
    fn = await make_lua("""\
        return function(n) local x = 0 for i = 1, n do x = x + i end return x end
        """, modules=modules, max_instructions=200_000, workers=1)
    for _ in range(50):  # 50 calls of ~40k instructions each: far over 200k in total
        assert await handle(fn, 10_000) == 50_005_000


@BOTH_MODES
async def test_timeout_stops_a_spinning_handler(make_lua: MakeLua, modules: list[str]) -> None:
    fn = await make_lua(RUNAWAY, modules=modules, timeout="50ms", max_blocking=None)
    with pytest.raises(LuaLimitExceeded, match=r"timeout \(0\.05s\) exceeded"):
        await handle(fn, "spin")


async def test_timeout_covers_waits(make_lua: MakeLua) -> None:
    fn = await make_lua(
        "local t = require('time') return function() t.sleep(5) end", timeout="50ms", workers=1
    )
    started = time.monotonic()
    with pytest.raises(LuaLimitExceeded, match="exceeded while waiting in sleep"):
        await handle(fn, None)
    assert time.monotonic() - started < 1.0


async def test_a_runaway_handler_does_not_stall_other_workers_beyond_its_limit(
    make_lua: MakeLua,
) -> None:
    fn = await make_lua("""\
        local time = require("time")
        return function(kind)
          if kind == "spin" then while true do end end
          for i = 1, 10 do time.sleep(0.01) end
          return "done"
        end
        """, max_blocking="100ms", workers=4)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick_task = asyncio.ensure_future(ticker())
    spin = asyncio.ensure_future(handle(fn, "spin"))
    busy = asyncio.gather(*(handle(fn, "work") for _ in range(3)))
    assert await busy == ["done"] * 3
    with pytest.raises(LuaLimitExceeded):
        await spin
    tick_task.cancel()
    assert max(gaps) < 0.3  # the loop was held at most about max_blocking


@BOTH_MODES
async def test_memory_limit_stops_a_hungry_handler_and_the_function_goes_on(
    make_lua: MakeLua, modules: list[str],
) -> None:
    # max_blocking off: filling 4 MB takes ~20 ms of CPU, but on a loaded machine more than
    # its 0.25 s of wall clock, and then that limit, not the memory cap, stopped the loop.
    fn = await make_lua("""\
        return function(n)
          local t = {}
          for i = 1, n do t[i] = string.rep("x", 64) .. i end
          return #t
        end
        """, modules=modules, memory_limit=4 * 1024 * 1024, workers=1, max_blocking=None)
    with pytest.raises(LuaLimitExceeded, match="memory_limit exceeded"):
        await handle(fn, 1_000_000)  # about 100 MB without the cap: far past 4 MB
    assert await handle(fn, 100) == 100


async def test_a_memory_limit_too_small_for_a_state_fails_load(make_lua: MakeLua) -> None:
    big = "local s = string.rep('x', 2 * 1024 * 1024) return function() return #s end"
    with pytest.raises(LoadError, match="memory_limit exceeded while loading"):
        await make_lua(big, memory_limit=1024 * 1024)


async def test_unsafe_libraries_are_given_only_when_listed(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        return function()
          return {type(os), type(io), type(debug), os and type(os.time()) or "none",
                  type(require("os"))}
        end
        """, unsafe_libraries=["os"])
    assert await handle(fn, None) == ["table", "nil", "nil", "number", "table"]
