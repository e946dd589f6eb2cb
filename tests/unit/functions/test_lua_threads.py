"""`run_in_thread: true`: Lua runs in worker threads, so long computations leave the loop free."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from relevo.functions.lua.errors import LuaHandlerError, LuaLimitExceeded
from relevo.message import Outcome
from tests.unit.functions.conftest import (
    DOCUMENTED_HANDLER,
    FakeRuntime,
    MakeLua,
    handle,
    make_delivery,
)
from tests.waiting import wait_until

BUSY = """\
local time = require("time")
return function(seconds)
  local until_ = time.now() + seconds
  local n = 0
  while time.now() < until_ do n = n + 1 end
  return n > 0
end
"""


class Stalls:
    """The longest gap between ticks of a task that wants to run every 5 ms."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now


@pytest.fixture
async def stalls() -> AsyncIterator[Stalls]:
    watcher = Stalls()
    task = asyncio.ensure_future(watcher.tick())
    await asyncio.sleep(0.01)
    yield watcher
    task.cancel()


async def test_a_long_computation_leaves_the_event_loop_free(
    make_lua: MakeLua, stalls: Stalls
) -> None:
    fn = await make_lua(BUSY, run_in_thread=True)
    assert await handle(fn, 0.3) is True  # past the default max_blocking: not applied here
    assert stalls.longest < 0.15


async def test_a_runaway_handler_in_a_thread_is_stopped_by_its_timeout(
    make_lua: MakeLua, stalls: Stalls
) -> None:
    fn = await make_lua("return function() while true do end end", modules=[],
                        run_in_thread=True, timeout="200ms", workers=1)
    started = time.monotonic()
    with pytest.raises(LuaLimitExceeded, match=r"timeout \(0\.2s\) exceeded"):
        await handle(fn, None)
    assert time.monotonic() - started < 1.0
    assert stalls.longest < 0.15


async def test_an_explicit_max_blocking_still_applies_in_threads(make_lua: MakeLua) -> None:
    fn = await make_lua(BUSY, run_in_thread=True, max_blocking="50ms")
    with pytest.raises(LuaLimitExceeded, match="max_blocking"):
        await handle(fn, 0.5)


async def test_modules_work_from_a_thread(make_lua: MakeLua, fake_runtime: FakeRuntime) -> None:
    fn = await make_lua("""\
        local queue = require("queue")
        local time = require("time")
        return function(body)
          time.sleep("10ms")
          local msg = queue.message()
          local ok = queue.publish("app:done", {id = msg:id(), body = body})
          return {ok, msg:ack(), msg:ack()}
        end
        """, run_in_thread=True)
    delivery = make_delivery()
    assert await handle(fn, {"n": 1}, delivery, fake_runtime) == [
        True, True, False, "message already settled"]
    assert fake_runtime.published == [("app:done", {"id": "msg-1", "body": {"n": 1}}, None)]
    outcomes = delivery.settler.outcomes  # type: ignore[attr-defined]
    await wait_until(lambda: outcomes == [Outcome.ACK], what="the ack from the Lua thread")


async def test_the_documented_handler_runs_in_threads(make_lua: MakeLua) -> None:
    fn = await make_lua(DOCUMENTED_HANDLER, modules=["json", "logger"],
                        run_in_thread=True)
    results = await asyncio.gather(*(handle(fn, {"id": n}) for n in range(8)))
    assert results == [{"id": n, "status": "done"} for n in range(8)]
    refused = await handle(fn, '{"id": 9, "action": "fail"}')
    assert isinstance(refused, LuaHandlerError)


async def test_a_call_cancelled_while_its_thread_runs_gives_up_the_state(
    make_lua: MakeLua,
) -> None:
    fn = await make_lua(BUSY, run_in_thread=True, workers=1)
    task = asyncio.ensure_future(handle(fn, 0.2))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.states_idle == 0  # the busy state was not handed back
    assert await handle(fn, 0.01) is True  # a fresh state serves the next call
