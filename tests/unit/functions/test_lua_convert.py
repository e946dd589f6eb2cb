"""Values crossing the Python/Lua boundary (the rules are in relevo.functions.lua.convert)."""

from __future__ import annotations

from typing import Any

import pytest

from relevo.functions.lua.errors import LuaError
from relevo.functions.lua.function import LuaFunction
from tests.unit.functions.conftest import MakeLua, handle

IDENTITY = "return function(body) return body end"


@pytest.fixture(params=[["time"], []], ids=["coroutine", "direct"])
async def identity(make_lua: MakeLua, request: pytest.FixtureRequest) -> LuaFunction:
    """Both ways of calling a handler hand values back their own way; both must agree."""
    return await make_lua(IDENTITY, modules=request.param)


@pytest.mark.parametrize(
    "value",
    [
        {"id": "task-123", "n": 3, "ratio": 0.25, "ok": True, "off": False},
        [1, 2, 3],
        ["a", {"b": [1, {"c": []}]}, [[], [1]]],
        {"nested": {"deeper": {"deepest": ["x", 1.5, -7]}}},
        {"text": "Procesando ñandú 処理 🚀", "ключ": "значение"},
        [],
        {},
        {"empty_list": [], "empty_dict": {}},
        [1, None, 3],
        [None],
        2**63 - 1,
        -(2**63),
        1.0,
        0.1,
        "",
        "plain",
        True,
        None,
    ],
)
async def test_python_values_round_trip_unchanged(identity: LuaFunction, value: Any) -> None:
    back = await handle(identity, value)
    assert back == value
    assert _types(back) == _types(value)  # ints stay ints, floats stay floats


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


async def test_none_values_in_a_dict_vanish_as_lua_tables_hold_no_nil(
    identity: LuaFunction,
) -> None:
    assert await handle(identity, {"a": 1, "gone": None}) == {"a": 1}


async def test_tuples_become_lists_and_huge_ints_become_floats(identity: LuaFunction) -> None:
    assert await handle(identity, (1, "two")) == [1, "two"]
    assert await handle(identity, 2**70) == float(2**70)


async def test_lua_types_arrive_as_python_types(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        return function(which)
          local values = {
            int = 3, float = 3.0, str = "ñ", yes = true,
            array = {10, 20, 30}, map = {a = 1}, empty = {},
            sparse = {[1] = "a", [3] = "c"}, mixed = {1, 2, x = 3},
            numkeys = {[10] = "ten"}, floatkey = {[1.5] = "x"},
          }
          return values[which]
        end
        """)
    expected = {
        "int": 3, "float": 3.0, "str": "ñ", "yes": True,
        "array": [10, 20, 30], "map": {"a": 1}, "empty": {},
        "sparse": {1: "a", 3: "c"}, "mixed": {1: 1, 2: 2, "x": 3},
        "numkeys": {10: "ten"}, "floatkey": {1.5: "x"},
    }
    for which, value in expected.items():
        got = await handle(fn, which)
        assert got == value, which
        assert type(got) is type(value), which


async def test_an_empty_list_stays_a_list_but_one_emptied_in_lua_comes_back_as_a_dict(
    make_lua: MakeLua,
) -> None:
    fn = await make_lua("return function(body) table.remove(body.items) return body end")
    assert await handle(fn, {"items": [1]}) == {"items": {}}  # was a non-empty list: unmarked
    fn2 = await make_lua("return function(body) return body end")
    assert await handle(fn2, {"items": []}) == {"items": []}


async def test_long_arrays_convert_in_order(make_lua: MakeLua) -> None:
    fn = await make_lua("""\
        return function(n)
          local t = {}
          for i = n, 1, -1 do t[i] = i * 2 end   -- filled backwards: keys in the hash part
          return t
        end
        """)
    assert await handle(fn, 5) == [2, 4, 6, 8, 10]
    assert await handle(fn, 10_000) == [i * 2 for i in range(1, 10_001)]


async def test_a_function_cannot_leave_lua(make_lua: MakeLua) -> None:
    fn = await make_lua("return function() return {f = print} end")
    with pytest.raises(LuaError, match="a Lua function cannot leave Lua"):
        await handle(fn, None)


async def test_invalid_utf8_cannot_leave_lua(make_lua: MakeLua) -> None:
    fn = await make_lua(r"return function() return '\xff\xfe' end")
    with pytest.raises(LuaError, match="not UTF-8"):
        await handle(fn, None)


async def test_a_python_object_cannot_enter_lua(identity: LuaFunction) -> None:
    with pytest.raises(LuaError, match="a Python object cannot be passed to Lua"):
        await handle(identity, object())


async def test_a_cyclic_table_cannot_leave_lua(make_lua: MakeLua) -> None:
    fn = await make_lua("return function() local t = {} t.self = t return t end")
    with pytest.raises(LuaError, match="a cyclic table"):
        await handle(fn, None)
