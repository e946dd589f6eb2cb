"""Waiting on conditions with deadlines: the only way tests here wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail the test with `what` once the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_until_async(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Like wait_until, for conditions that must be awaited (e.g. queue counts)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


class _HasInfo(Protocol):
    async def info(self, queue_id: str) -> dict[str, int]: ...


async def queue_holds(
    app: _HasInfo, queue_id: str, count: int, timeout_s: float = 10.0
) -> None:
    """Wait until a queue's message_count is `count` (brokers report counts lazily)."""

    async def check() -> bool:
        return (await app.info(queue_id))["message_count"] == count

    await wait_until_async(check, timeout_s, f"{queue_id} to hold {count} messages")
