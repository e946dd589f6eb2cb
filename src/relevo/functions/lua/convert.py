"""Values across the Python/Lua boundary, both ways, without loss where Lua allows it.

Python -> Lua: dict -> table; list/tuple -> table with keys 1..n; an empty list -> an
empty table marked as array (`json.array`); None inside a list -> `json.null` (so the list
keeps its length); None as a dict value -> the key is absent (Lua tables hold no nil);
str/bytes -> string; int -> integer (beyond 64 bits: float); float -> float; bool -> boolean.

Lua -> Python: a table whose keys are exactly 1..n -> list; an empty table -> {} unless
marked as array (then []); any other table -> dict (number keys stay numbers);
`json.null` -> None; integer -> int; float -> float (1.0 stays 1.0); strings -> str (they
must be UTF-8). Functions, coroutines and userdata cannot leave Lua: TypeError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lupa.lua54 as lupa_lua

_PLAIN = frozenset({str, int, float, bool, bytes})
_SCALARS = _PLAIN | {type(None)}


class Converter:
    """Converts values for one Lua state (tables belong to the state that made them)."""

    __slots__ = ("_describe", "_new_array", "_null", "_table_from", "table_type", "to_lua")

    def __init__(self, runtime: Any, describe: Any, new_array: Any, null: Any) -> None:
        self._table_from = runtime.table_from
        self.table_type: type = type(runtime.table())  # lupa keeps its table class private
        self._describe = describe
        self._new_array = new_array
        self._null = null
        self.to_lua = self._make_to_lua()

    def _make_to_lua(self) -> Callable[[Any], Any]:
        """A closure over locals: this runs once per message, so every lookup counts."""
        table_from, new_array, null = self._table_from, self._new_array, self._null
        plain, scalars = _PLAIN, _SCALARS

        def to_lua(value: Any) -> Any:
            kind = type(value)
            if kind is dict:
                for item in value.values():
                    if type(item) not in plain:
                        break
                else:  # flat and without None: lupa copies it in one go
                    return table_from(value)
                return table_from(
                    {key: to_lua(item) for key, item in value.items() if item is not None}
                )
            if kind in scalars:
                return value
            if kind is list or kind is tuple:
                if not value:
                    return new_array()
                return table_from([null if item is None else to_lua(item) for item in value])
            if isinstance(value, dict):
                return to_lua(dict(value))
            if isinstance(value, list | tuple):
                return to_lua(list(value))
            if isinstance(value, str | int | float | bytes):  # subclasses (enums and the like)
                return value
            raise TypeError(f"a Python {kind.__name__} cannot be passed to Lua")

        return to_lua

    def from_lua(self, value: Any) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is not self.table_type:
            raise TypeError(f"a Lua {lupa_lua.lua_type(value) or kind.__name__} cannot leave Lua")
        shape = self._describe(value)
        if type(shape) is tuple:
            code = shape[0]
            from_lua = self.from_lua
            if code == 1:
                return [from_lua(item) for item in shape[1:]]
            return [from_lua(value[i]) for i in range(1, shape[1] + 1)]
        if shape == 0:
            return None
        if shape == 1:
            return []
        return {self._key(key): self.from_lua(item) for key, item in value.items()}

    def _key(self, key: Any) -> Any:
        if type(key) in _SCALARS:
            return key
        raise TypeError(f"a table with a {lupa_lua.lua_type(key)} key cannot leave Lua")
