"""Lua functions under test: write a source, load it, call its handler like a worker would."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from relevo.context import current_delivery, current_runtime
from relevo.errors import QueueNotFound
from relevo.functions.lua.function import LuaFunction
from relevo.functions.lua.settings import LuaSettings
from relevo.message import Delivery, Headers, Outcome

FIXTURES = Path(__file__).parent / "lua"
DOCUMENTED_HANDLER = Path(__file__).parents[3] / "examples" / "lua" / "task_handler.lua"
"""The original documentation's handler, as the example ships it."""
ALL_MODULES = ["json", "logger", "queue", "time"]

MakeLua = Callable[..., Awaitable[LuaFunction]]


@pytest.fixture
async def make_lua(tmp_path: Path) -> AsyncIterator[MakeLua]:
    """`await make_lua(code_or_fixture_path, modules=[...], workers=4, **settings)`."""
    made: list[LuaFunction] = []

    async def make(
        source: str | Path, *, modules: list[str] | None = None, workers: int = 4, **settings: Any
    ) -> LuaFunction:
        if isinstance(source, Path):
            path = source
        else:
            path = tmp_path / f"handler{len(made)}.lua"
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        config = LuaSettings.model_validate(
            {"source": f"file://{path}", "modules": ALL_MODULES if modules is None else modules,
             **settings}
        )
        function = LuaFunction("app:fn", config, workers)
        made.append(function)
        await function.load()
        return function

    yield make
    for function in made:
        await function.close()


class RecordingSettler:
    """The driver side of a test delivery: records what the handler settled."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.outcomes: list[Outcome] = []

    def settle(self, delivery: Delivery, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def make_delivery(headers: Headers | None = None, attempts: int = 1) -> Delivery:
    return Delivery(RecordingSettler(), "msg-1", b"{}", headers, attempts)


async def handle(
    function: LuaFunction,
    payload: Any,
    delivery: Delivery | None = None,
    runtime: FakeRuntime | None = None,
) -> Any:
    """Call the handler as a worker does: with its delivery (and app) in context."""
    token = current_delivery.set(delivery if delivery is not None else make_delivery())
    app_token = current_runtime.set(runtime)
    try:
        result = function.handler(payload)
        return await result if inspect.iscoroutine(result) else result
    finally:
        current_runtime.reset(app_token)
        current_delivery.reset(token)


class FakeRuntime:
    """The running app as handlers see it: records publishes, answers info."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        self.published: list[tuple[str, Any, Headers | None]] = []

    async def publish(self, queue_id: str, data: Any, headers: Headers | None = None) -> str:
        if queue_id == "app:missing":
            raise QueueNotFound(f"no queue {queue_id!r}")
        await asyncio.sleep(0)
        self.published.append((queue_id, data, headers))
        return f"id-{len(self.published)}"

    async def info(self, queue_id: str) -> dict[str, int]:
        if queue_id == "app:missing":
            raise QueueNotFound(f"no queue {queue_id!r}")
        return {"message_count": 3, "ready": 2, "in_flight": 1, "consumer_count": 1}


@pytest.fixture
async def fake_runtime() -> FakeRuntime:
    return FakeRuntime()
