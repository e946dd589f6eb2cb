"""One Lua state: a sandboxed interpreter holding one copy of the handler, used by one call
at a time. Its call loop resumes the handler's coroutine on the event loop and awaits, on
the loop, whatever the handler yields (sleep, publish, info)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import lupa.lua54 as lupa_lua

from relevo.functions.lua.convert import Converter
from relevo.functions.lua.errors import LuaError, LuaHandlerError, LuaLimitExceeded, LuaLoadError
from relevo.functions.lua.modules import Host, serve
from relevo.functions.lua.sandbox import BOOTSTRAP

HOOK_EVERY = 10_000
"""Instructions between two limit checks: the granularity of `max_instructions`."""

_DONE, _WAIT, _YIELD, _RAISED, _KILLED, _RETURNED = 0, 1, 2, 3, 4, 5
_MEMORY = "not enough memory"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call limits, in seconds and instructions; None means unlimited."""

    timeout_s: float | None = None
    max_blocking_s: float | None = None
    max_instructions: int | None = None
    memory_limit: int | None = None

    @property
    def hooked(self) -> bool:
        return (
            self.timeout_s is not None
            or self.max_blocking_s is not None
            or self.max_instructions is not None
        )


@dataclass(frozen=True, slots=True)
class Source:
    """What every state of one function loads."""

    entry_id: str
    path: str  # for messages
    chunkname: str  # "@handler.lua": Lua's messages read "handler.lua:12: ..."
    text: str
    method: str | None
    modules: list[str]


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> NoReturn:
    raise AttributeError("Python attributes are not reachable from Lua")


class LuaState:
    """A sandboxed lupa runtime with the handler loaded and a reusable worker coroutine."""

    __slots__ = (
        "_blocking_label",
        "_convert",
        "_limits",
        "_source",
        "_timeout_label",
        "_worker",
        "broken",
        "co",
        "handler_fn",
        "runtime",
    )

    def __init__(self, source: Source, limits: Limits, log: logging.Logger) -> None:
        self._source = source
        self._limits = limits
        self.broken = False  # a limit was hit: globals may be half-updated; drop the state
        self._timeout_label = f"timeout ({limits.timeout_s:g}s)" if limits.timeout_s else ""
        self._blocking_label = (
            f"max_blocking ({limits.max_blocking_s:g}s without yielding)"
            if limits.max_blocking_s
            else ""
        )
        options: dict[str, Any] = {
            "unpack_returned_tuples": True,
            "register_eval": False,
            "register_builtins": False,
            "attribute_filter": _deny_attributes,
        }
        if limits.memory_limit is not None:
            options["max_memory"] = limits.memory_limit
        try:
            self.runtime = lupa_lua.LuaRuntime(**options)
            self.runtime.set_overflow_handler(float)
            host = Host(log, source.modules)
            boot_fn = self.runtime.execute(BOOTSTRAP, host.table(self.runtime, self._hook_every()))
        except lupa_lua.LuaMemoryError as exc:
            raise LuaLoadError(
                f"{source.path}: memory_limit {limits.memory_limit} is too small for a Lua state"
            ) from exc
        self._worker, boot, describe, new_array, null = boot_fn
        self._convert = host.convert = Converter(self.runtime, describe, new_array, null)
        self.handler_fn = self._boot(boot)
        self.co: Any = self._worker(self.handler_fn)

    def _hook_every(self) -> int:
        return HOOK_EVERY if self._limits.hooked else 0

    def _boot(self, boot: Any) -> Any:
        source = self._source
        loaded = boot(source.text, source.chunkname, source.method)
        if type(loaded) is tuple:  # nil, syntax error
            raise LuaLoadError(f"{source.path}: {loaded[1]}")
        deadline, label = self._deadline(math.inf)
        try:
            out = loaded(deadline, label, self._limits.max_instructions)
        except lupa_lua.LuaMemoryError as exc:
            raise LuaLoadError(f"{source.path}: memory_limit exceeded while loading") from exc
        code = out[0]
        if code == _RETURNED and out[1] >= 1 and out[2] is not None:
            return out[2]
        if code == _RETURNED:
            raise LuaLoadError(f"{source.path}: {out[3] if out[1] >= 2 else 'no handler'}")
        if code == _RAISED and out[1] == _MEMORY:
            raise LuaLoadError(f"{source.path}: memory_limit exceeded while loading")
        if code in (_RAISED, _KILLED):
            raise LuaLoadError(f"{source.path}: {self._text(out[1])}")
        raise LuaLoadError(f"{source.path}: the chunk cannot wait (yield) while loading")

    def _deadline(self, call_deadline: float) -> tuple[float, str]:
        """The hook's deadline for the next run of Lua code, and which limit it enforces."""
        blocking = self._limits.max_blocking_s
        if blocking is not None:
            slice_end = time.monotonic() + blocking
            if slice_end < call_deadline:
                return slice_end, self._blocking_label
        return call_deadline, self._timeout_label

    async def call(self, payload: Any) -> Any:
        """Run the handler once; returns its settlement value (see LuaFunction.handler)."""
        limits = self._limits
        call_deadline = math.inf
        if limits.timeout_s is not None:
            call_deadline = time.monotonic() + limits.timeout_s
        deadline, label = self._deadline(call_deadline)
        budget = math.inf if limits.max_instructions is None else limits.max_instructions
        finished = False
        try:
            try:
                arg = self._convert.to_lua(payload)
            except (TypeError, RecursionError) as exc:
                finished = True
                path = self._source.path
                raise LuaError(f"{path}: the payload cannot enter Lua: {exc}") from None
            out = self.co(deadline, label, budget, arg)
            while True:
                code = out[0]
                if code == _DONE:
                    finished = True
                    return self._settlement(out)
                if code == _WAIT:
                    answer = await self._wait(out[1], out[2:], call_deadline)
                elif code == _YIELD:
                    await asyncio.sleep(0)
                    answer = ()
                elif code == _KILLED:
                    self.broken = True
                    raise LuaLimitExceeded(self._text(out[1]))
                else:  # _RAISED (or the worker returned, which cannot happen)
                    raise self._raised(out)
                deadline, label = self._deadline(call_deadline)
                out = self.co(deadline, label, None, *answer)
        except lupa_lua.LuaMemoryError as exc:
            self.broken = True
            raise LuaLimitExceeded(f"{self._source.path}: memory_limit exceeded") from exc
        finally:
            if not finished:  # raised, cancelled or timed out mid-handler
                self.co = self._worker(self.handler_fn) if not self.broken else None

    async def _wait(self, op: str, args: tuple[Any, ...], call_deadline: float) -> tuple[Any, ...]:
        if call_deadline == math.inf:
            return await serve(self._convert, op, args)
        try:
            async with asyncio.timeout(max(0.0, call_deadline - time.monotonic())):
                return await serve(self._convert, op, args)
        except TimeoutError:
            raise LuaLimitExceeded(
                f"{self._source.path}: {self._timeout_label} exceeded while waiting in {op}"
            ) from None

    def _settlement(self, out: tuple[Any, ...]) -> Any:
        count = out[1]
        if count == 0:
            return None
        first = out[2]
        if first is None or first is False:
            err = out[3] if count >= 2 else None
            if err is not None:
                value = self._convert_safe(err)
                return LuaHandlerError(value if isinstance(value, str) else repr(value), value)
            return None if first is None else False
        if type(first) is self._convert.table_type:
            return self._convert.from_lua(first)
        return first

    def _raised(self, out: tuple[Any, ...]) -> LuaError:
        value = out[1]
        if value == _MEMORY:
            self.broken = True
            return LuaLimitExceeded(f"{self._source.path}: memory_limit exceeded", out[2])
        converted = self._convert_safe(value)
        message = self._text(converted)
        return LuaError(message, out[2] if len(out) > 2 else "", converted)

    def _convert_safe(self, value: Any) -> Any:
        try:
            return self._convert.from_lua(value)
        except (TypeError, RecursionError, UnicodeDecodeError):
            return str(value)

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return f"{self._source.chunkname.lstrip('@')}: Lua error object {value!r}"

    def close(self) -> None:
        self.co = None
        self.handler_fn = None
