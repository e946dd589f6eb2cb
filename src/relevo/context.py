"""What a handler can reach: its delivery and the running app, carried in context variables.

Context variables follow the handler into the worker thread of a sync handler (the
thread runs in a copy of the worker's context), so `relevo.message()` and
`relevo.publish_sync()` work the same in `def` and `async def` handlers.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol

from relevo.clock import due_time
from relevo.errors import NoDeliveryContext, RelevoError
from relevo.message import Delivery, Headers


class Runtime(Protocol):
    """The part of a running app that handlers may use."""

    loop: asyncio.AbstractEventLoop | None  # None until the app runs

    async def publish(
        self, queue_id: str, data: Any, headers: Headers | None = None, *,
        connection: Any = None, delay: float | str | None = None,
        at: datetime | float | None = None,
    ) -> str: ...

    async def info(self, queue_id: str) -> dict[str, int]: ...


current_delivery: ContextVar[Delivery | None] = ContextVar("relevo_delivery", default=None)
current_runtime: ContextVar[Runtime | None] = ContextVar("relevo_runtime", default=None)


def message() -> Delivery:
    """The delivery the current handler is processing."""
    delivery = current_delivery.get()
    if delivery is None:
        raise NoDeliveryContext("relevo.message() is only available inside a handler")
    return delivery


def runtime() -> Runtime:
    """The running app of the current context; RelevoError when there is none."""
    app = current_runtime.get()
    if app is None:
        raise RelevoError("no relevo app is running here (use `async with app:`)")
    return app


async def publish(
    queue_id: str, data: Any, headers: Headers | None = None, *,
    connection: Any = None, delay: float | str | None = None,
    at: datetime | float | None = None,
) -> str:
    """Publish through the running app; returns the message ID. `delay`/`at`: as
    `App.publish`, not delivered before then; `connection`: as `App.publish`, inside the
    caller's own database transaction (postgres driver)."""
    return await runtime().publish(queue_id, data, headers, connection=connection,
                                   delay=delay, at=at)


def publish_sync(
    queue_id: str, data: Any, headers: Headers | None = None, timeout_s: float | None = None,
    *, delay: float | str | None = None, at: datetime | float | None = None,
) -> str:
    """Publish from a sync handler's thread; blocks until the message is stored."""
    due_time(delay, at)  # a bad delay or at fails here, in the caller's thread
    app = runtime()
    loop = app.loop
    if loop is None:
        raise RelevoError("the app is not running")
    if _running_loop() is loop:
        raise RelevoError("publish_sync() would block the event loop; use `await relevo.publish`")
    future = asyncio.run_coroutine_threadsafe(
        app.publish(queue_id, data, headers, delay=delay, at=at), loop
    )
    return future.result(timeout_s)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread: the handler-thread case
        return None
