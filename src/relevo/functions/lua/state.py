"""One Lua state: a sandboxed interpreter holding one copy of the handler, used by one call
at a time. A call resumes the handler's coroutine on the event loop (`start`); whatever the
handler then yields (sleep, publish, info) is awaited on the loop (`run`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import lupa.lua54 as lupa_lua

from relevo.control import Retry
from relevo.errors import LoadError, RelevoError
from relevo.functions.lua.convert import Converter
from relevo.functions.lua.errors import LuaError, LuaHandlerError, LuaLimitExceeded
from relevo.functions.lua.modules import Host, serve
from relevo.functions.lua.sandbox import BOOTSTRAP

HOOK_EVERY = 10_000
"""Instructions between two limit checks: the granularity of every limit."""

WAITING_MODULES = frozenset({"time", "queue"})
"""A handler whose modules include none of these cannot wait, so it runs without a
coroutine of its own (cheaper); the others run as coroutines so their waits can yield."""

# Codes of the step protocol (sandbox.py).
ACK, WAIT, YIELD, RAISED, KILLED, RETURNED, NACK_ERR, NACK = 0, 1, 2, 3, 4, 5, 6, 7
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

    def for_lua(self) -> dict[str, Any]:
        return {
            "hook_every": HOOK_EVERY if self.hooked else 0,
            "max_blocking": self.max_blocking_s,
            "max_blocking_label": f"max_blocking ({self.max_blocking_s or 0:g}s without yielding)",
            "timeout_label": f"timeout ({self.timeout_s or 0:g}s)",
        }


@dataclass(frozen=True, slots=True)
class Source:
    """What every state of one function loads."""

    entry_id: str
    path: str  # for messages
    chunkname: str  # "@handler.lua": Lua's messages read "handler.lua:12: ..."
    text: str
    method: str | None
    modules: list[str]
    unsafe_libraries: list[str]


Resume = Callable[..., Awaitable[tuple[Any, ...]]]
"""`await resume(co, *answer)`: resume a worker somewhere and return what it reported."""


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> NoReturn:
    raise AttributeError("Python attributes are not reachable from Lua")


class LuaState:
    """A sandboxed lupa runtime with the handler loaded and a reusable worker.

    The worker is a pair of Lua closures, `co` (start with limits, or resume after a
    wait) and `fast` (start with none to set): around a coroutine when the handler can
    wait, around a protected direct call otherwise.
    """

    __slots__ = (
        "_limits",
        "_source",
        "_worker",
        "broken",
        "co",
        "convert",
        "deadline",
        "fast",
        "handler_fn",
        "per_call",
        "plain",
        "runtime",
        "table_type",
        "to_lua",
    )

    def __init__(self, source: Source, limits: Limits, log: logging.Logger) -> None:
        self._source = source
        self._limits = limits
        self.broken = False  # a limit was hit: globals may be half-updated; drop the state
        self.deadline = math.inf  # of the current call (monotonic clock)
        # The instruction budget passed at each call start; None when no per-call limit
        # (timeout, max_instructions) needs setting, which keeps the clock off the hot path.
        self.per_call: float | None = None
        if limits.timeout_s is not None or limits.max_instructions is not None:
            self.per_call = float(limits.max_instructions or math.inf)
        self.plain = self.per_call is None  # nothing to set per call: the fastest path
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
            host = Host(log, source.modules, source.unsafe_libraries)
            exported = self.runtime.execute(BOOTSTRAP, host.table(self.runtime, limits.for_lua()))
        except lupa_lua.LuaMemoryError as exc:
            raise LoadError(
                f"{source.path}: memory_limit {limits.memory_limit} is too small for a Lua state"
            ) from exc
        worker, direct, boot, describe, new_array, null = exported
        self._worker = worker if WAITING_MODULES & set(source.modules) else direct
        self.convert = host.convert = Converter(self.runtime, describe, new_array, null)
        self.table_type = self.convert.table_type
        self.to_lua = self.convert.to_lua
        self.handler_fn = self._boot(boot)
        self.co: Any = None
        self.fast: Any = None
        self.renew()

    def _boot(self, boot: Any) -> Any:
        source, limits = self._source, self._limits
        loaded = boot(source.text, source.chunkname, source.method)
        if type(loaded) is tuple:  # nil, syntax error
            raise LoadError(f"{source.path}: {loaded[1]}")
        try:
            out = loaded(self._call_deadline(), limits.max_instructions or math.inf)
        except lupa_lua.LuaMemoryError as exc:
            raise LoadError(f"{source.path}: memory_limit exceeded while loading") from exc
        code = out[0]
        if code == RETURNED and out[1] is not None:
            return out[1]
        if code == RETURNED:
            raise LoadError(f"{source.path}: {out[2]}")
        if code == RAISED and out[1] == _MEMORY:
            raise LoadError(f"{source.path}: memory_limit exceeded while loading")
        if code in (RAISED, KILLED):
            raise LoadError(f"{source.path}: {self._text(out[1])}")
        raise LoadError(f"{source.path}: the chunk cannot wait (yield) while loading")

    def _call_deadline(self) -> float:
        timeout = self._limits.timeout_s
        return math.inf if timeout is None else time.monotonic() + timeout

    # -- calling -------------------------------------------------------------------------

    def start(self, payload: Any) -> tuple[Any, ...]:
        """Run the handler up to its first wait or its end, with per-call limits set.

        On the hot path (`plain` states) callers do `fast(to_lua(payload))` instead;
        exceptions from either go through `translate`.
        """
        arg = self.to_lua(payload)
        self.deadline = self._call_deadline()
        return self.co(self.deadline, self.per_call, arg)  # type: ignore[no-any-return]

    def translate(self, exc: BaseException) -> RelevoError | None:
        """The relevo error for what escaped a call (None: let it through as it is)."""
        path = self._source.path
        if isinstance(exc, lupa_lua.LuaMemoryError):
            self.drop()
            return LuaLimitExceeded(f"{path}: memory_limit exceeded")
        if isinstance(exc, lupa_lua.LuaError):
            # Only a limit escapes the protected call: once hit, the hook raises on every
            # instruction, the error handler's included.
            self.drop()
            message = str(exc).split("\n", 1)[0]
            if message.endswith(" exceeded"):
                return LuaLimitExceeded(message)
            return LuaError(message, str(exc))
        if isinstance(exc, TypeError):  # says which value cannot enter or leave Lua
            return LuaError(f"{path}: {exc}")
        if isinstance(exc, RecursionError | UnicodeDecodeError):
            return LuaError(
                f"{path}: a value cannot cross between Python and Lua (a cyclic table, or "
                f"a string that is not UTF-8): {exc}"
            )
        return None

    async def run(self, out: tuple[Any, ...], resume: Resume | None = None) -> Any:
        """Serve the handler's waits until it settles; `out` is what `start` returned.

        `resume` runs the resumption elsewhere (a worker thread); by default it is a plain
        call on the event loop.
        """
        call_deadline = self.deadline
        finished = False
        try:
            while True:
                if type(out) is not tuple:  # an ack: the handler's value
                    finished = True
                    return self.settlement((ACK, out))
                code = out[0]
                if code == WAIT:
                    answer = await self._wait(out[1], out[2:], call_deadline)
                elif code == YIELD:
                    await asyncio.sleep(0)
                    answer = ()
                else:
                    finished = True
                    return self.settlement(out)
                if resume is None:
                    out = self.co(None, None, *answer)
                else:
                    out = await resume(self.co, *answer)
        except asyncio.CancelledError:
            if resume is not None:  # a thread may still be running Lua in this state
                finished = True
                self.drop()
            raise
        finally:  # what escapes is translated by the caller (`translate`)
            if not finished:  # raised, cancelled or timed out mid-handler
                self.renew()

    async def _wait(self, op: str, args: tuple[Any, ...], call_deadline: float) -> tuple[Any, ...]:
        if call_deadline == math.inf:
            return await serve(self.convert, op, args)
        try:
            async with asyncio.timeout(max(0.0, call_deadline - time.monotonic())):
                return await serve(self.convert, op, args)
        except TimeoutError:
            label = self._limits.for_lua()["timeout_label"]
            raise LuaLimitExceeded(
                f"{self._source.path}: {label} exceeded while waiting in {op}"
            ) from None

    def settlement(self, out: tuple[Any, ...]) -> Any:
        """What the worker pool settles by; raises for errors and limits."""
        code = out[0]
        if code == ACK:
            value = out[1]
            return self.convert.from_lua(value) if type(value) is self.table_type else value
        if code == NACK:
            return False
        if code == NACK_ERR:
            value = self._convert_safe(out[1])
            reason = value if isinstance(value, str) else repr(value)
            if len(out) > 2 and out[2] is not None:
                return _retry(reason, out[2])
            return LuaHandlerError(reason, value)
        if code == KILLED:
            self.drop()
            raise LuaLimitExceeded(self._text(out[1]))
        error = self._raised(out)
        self.renew()  # that coroutine died
        raise error

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
            return self.convert.from_lua(value)
        except (TypeError, RecursionError, UnicodeDecodeError):
            return str(value)

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return f"{self._source.chunkname.lstrip('@')}: Lua error object {value!r}"

    def renew(self) -> None:
        """A fresh worker (the last one raised, or was abandoned); none once broken."""
        if self.broken:
            self.co = self.fast = None
            return
        self.co, fast = self._worker(self.handler_fn)
        self.fast = fast if self.plain else None

    def drop(self) -> None:
        """A limit was hit: this state is done for."""
        self.broken = True
        self.co = self.fast = None

    def close(self) -> None:
        self.co = self.fast = None
        self.handler_fn = None


def _retry(reason: str, delay: Any) -> Retry | LuaHandlerError:
    """`return nil, err, delay`: a retry after `delay` seconds (or a duration string)."""
    try:
        return Retry(delay, reason)
    except ValueError as exc:
        return LuaHandlerError(f"{reason} (and a bad retry delay: {exc})", reason)
