"""Errors of Lua functions, all under RelevoError (lupa's own exceptions never leave here).

    RelevoError
    ├── LoadError            (relevo.errors) the source cannot be read, compiled or run to
    │                        a handler: one kind of error for Lua and Python functions
    ├── LuaHandlerError      the handler returned `nil, err` or `false, err` (a nack)
    └── LuaError             the handler raised `error(...)`; message carries file:line
        └── LuaLimitExceeded instruction, time or memory limit hit; the state is replaced
"""

from __future__ import annotations

from typing import Any

from relevo.errors import RelevoError


class LuaHandlerError(RelevoError):
    """A Lua handler's `return nil, err`: a nack whose reason is `err`."""

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.value = value  # the Lua error value, converted (a string, a dict, ...)


class LuaError(RelevoError):
    """A Lua handler raised; `str()` is Lua's message ("handler.lua:12: boom")."""

    def __init__(self, message: str, traceback: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.lua_traceback = traceback
        self.value = value


class LuaLimitExceeded(LuaError):
    """A handler ran past `max_instructions`, `timeout`, `max_blocking` or `memory_limit`."""
