"""`function.lua`: a Lua handler run in-process on lupa (Lua 5.4), one Lua state per worker.

Each concurrent call gets a state of its own from a pool (at most `workers` kept idle), so
Lua globals are never shared between calls running at the same time; a state lives on
across calls, so a worker's caches and counters persist. Handler code runs on the event
loop thread until it yields (time.sleep, queue.publish, queue.info), and the wait is
awaited on the loop, which is how N workers overlap their I/O. See docs/functions/lua.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from relevo.errors import LoadError, RelevoError
from relevo.functions.base import Handler
from relevo.functions.lua.settings import LuaSettings
from relevo.functions.lua.state import WAIT, YIELD, Limits, LuaState, Source


class LuaFunction:
    """The Function protocol for Lua; `handler` settles like a Python one.

    `return nil, err` and `return false, err` give a LuaHandlerError instance (nack with
    `err` as reason), `return false` gives False (nack), `error(...)` raises LuaError
    ("handler.lua:12: ..."), a limit raises LuaLimitExceeded; anything else acks and is
    returned converted to Python.
    """

    def __init__(self, entry_id: str, settings: LuaSettings, workers: int) -> None:
        self.entry_id = entry_id
        self.settings = settings
        self.workers = max(1, workers)
        self.log = logging.getLogger(f"relevo.lua.{entry_id}")
        blocking = settings.max_blocking
        if settings.run_in_thread and "max_blocking" not in settings.model_fields_set:
            blocking = None  # off the loop, long computations are what threads are for
        self.limits = Limits(
            timeout_s=settings.timeout,
            max_blocking_s=blocking,
            max_instructions=settings.max_instructions,
            memory_limit=settings.memory_limit,
        )
        self._source: Source | None = None
        self._idle: list[LuaState] = []
        self._keep = 0  # idle states kept: `workers` while loaded, 0 once closed
        self._threads: ThreadPoolExecutor | None = None

    @property
    def path(self) -> str:
        return source_path(self.settings.source)

    async def load(self) -> None:
        path = self.path
        try:
            text = await asyncio.to_thread(_read, path)
        except OSError as exc:
            raise LoadError(f"{self.entry_id}: cannot read Lua source {path}: {exc}") from exc
        self._source = Source(
            entry_id=self.entry_id,
            path=path,
            chunkname="@" + os.path.basename(path),
            text=text,
            method=self.settings.method,
            modules=list(self.settings.modules),
            unsafe_libraries=list(self.settings.unsafe_libraries),
        )
        self._keep = self.workers
        self._idle = [self._new_state()]  # compiles and runs the chunk: errors surface now
        if self.settings.run_in_thread and self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="relevo-lua")

    async def close(self) -> None:
        self._keep = 0
        for state in self._idle:
            state.close()
        self._idle.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    @property
    def handler(self) -> Handler:
        return self._call_in_thread if self.settings.run_in_thread else self._call

    def _new_state(self) -> LuaState:
        if self._source is None:
            raise RelevoError(f"{self.entry_id}: Lua function used before load()")
        return LuaState(self._source, self.limits, self.log)

    def _call(self, payload: Any) -> Any:
        """Answers at once when Lua does not wait (no coroutine per message); when it
        does, returns a coroutine that owns the state until the call ends."""
        idle = self._idle
        state = idle.pop() if idle else self._new_state()
        try:
            fast = state.fast
            out = fast(state.to_lua(payload)) if fast is not None else state.start(payload)
            if type(out) is not tuple:  # the hot path, an ack: the handler's value itself
                result = out if type(out) is not state.table_type else state.convert.from_lua(out)
            elif out[0] in (WAIT, YIELD):
                return self._wait(state, out)  # it owns the state from here
            else:
                result = state.settlement(out)
        except BaseException as exc:
            error = _escaped(state, exc)
            self._put_back(state)  # after translating: a broken state is closed here
            if error is exc:
                raise
            raise error from None
        self._put_back(state)
        return result

    async def _wait(self, state: LuaState, out: tuple[Any, ...]) -> Any:
        try:
            return await state.run(out)
        except BaseException as exc:
            error = _escaped(state, exc)
            if error is exc:
                raise
            raise error from None
        finally:
            self._put_back(state)

    def _put_back(self, state: LuaState) -> None:
        if state.co is not None and len(self._idle) < self._keep:
            self._idle.append(state)
        else:  # broken by a limit, closed, or more states than workers
            state.close()

    async def _call_in_thread(self, payload: Any) -> Any:
        """`run_in_thread`: each run of Lua code goes to a worker thread, waits stay here.

        The thread runs in a copy of this context, so `queue.message()` finds the delivery.
        A call cancelled while its thread runs Lua leaves the state to that thread: the
        state is dropped, never handed to another call.
        """
        idle = self._idle
        state = idle.pop() if idle else self._new_state()
        loop = asyncio.get_running_loop()
        threads, context = self._threads, contextvars.copy_context()

        async def resume(co: Any, *answer: Any) -> tuple[Any, ...]:
            return await loop.run_in_executor(threads, context.run, co, None, None, *answer)

        try:
            out = await loop.run_in_executor(threads, context.run, state.start, payload)
            if type(out) is not tuple:  # an ack: the handler's value itself
                return out if type(out) is not state.table_type else state.convert.from_lua(out)
            if out[0] in (WAIT, YIELD):
                return await state.run(out, resume)
            return state.settlement(out)
        except asyncio.CancelledError:
            state.drop()
            raise
        except BaseException as exc:
            error = _escaped(state, exc)
            if error is exc:
                raise
            raise error from None
        finally:
            self._put_back(state)

    @property
    def states_idle(self) -> int:
        """Idle Lua states kept for the next calls (for tests and stats)."""
        return len(self._idle)


def _escaped(state: LuaState, exc: BaseException) -> BaseException:
    """What to raise for an exception out of a Lua call: relevo's own as it is, the rest
    translated (a Lua error with its file and line, a limit, ...)."""
    if isinstance(exc, RelevoError):
        return exc
    return state.translate(exc) or exc


def source_path(source: str) -> str:
    """`file:///abs/x.lua` -> `/abs/x.lua`; `file://rel/x.lua` -> `rel/x.lua`."""
    return source.removeprefix("file://")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
