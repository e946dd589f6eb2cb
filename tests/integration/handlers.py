"""Handlers the integration tests name as `handler: tests.integration.handlers:<name>`."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import relevo


@dataclass
class Call:
    body: Any
    id: str
    attempts: int
    headers: dict[str, Any]
    thread: str
    at: float = field(default_factory=time.time)  # wall time the handler ran


@dataclass
class State:
    calls: list[Call] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    fixed: bool = False  # fails_until_fixed raises until a test sets this


state = State()


def reset() -> None:
    global state
    state = State()


def _record(body: Any) -> None:
    message = relevo.message()
    state.calls.append(
        Call(body, message.id, message.attempts, dict(message.headers),
             threading.current_thread().name)
    )


async def record(body: Any) -> Any:
    _record(body)
    if isinstance(body, dict) and body.get("fail"):
        raise ValueError(f"task {body.get('id')} failed on purpose")
    return body


async def fails_until_fixed(body: Any) -> Any:
    _record(body)
    if not state.fixed:
        raise ValueError("the bug is not fixed yet")
    return body


async def returns_false(body: Any) -> bool:
    _record(body)
    return False


async def returns_error(body: Any) -> Exception:
    _record(body)
    return RuntimeError("returned, not raised")


async def settles_itself(body: Any) -> None:
    _record(body)
    message = relevo.message()
    state.results.append((message.ack(), message.ack(), message.nack()))


def sync_record(body: Any) -> Any:
    _record(body)
    message = relevo.message()
    state.results.append((message.header("k"), message.nack() if body.get("nack") else None))
    if body.get("forward"):
        state.results.append(relevo.publish_sync(body["forward"], {"from": message.id}))
    return body


async def async_forward(body: Any) -> None:
    _record(body)
    state.results.append(await relevo.publish(body["forward"], {"from": relevo.message().id},
                                              headers={"hop": 1}))


async def gated(body: Any) -> None:
    """Waits for the test to open the gate; counts how many run at once."""
    _record(body)
    state.running += 1
    state.max_running = max(state.max_running, state.running)
    try:
        while not state.gate.is_set():  # noqa: ASYNC110 - a threading.Event, shared with sync handlers
            await asyncio.sleep(0.005)
    finally:
        state.running -= 1


def sync_gated(body: Any) -> None:
    _record(body)
    state.gate.wait(10)
    state.results.append(relevo.message().ack())


async def gated_forward(body: Any) -> None:
    """Waits for the gate, then publishes to `body["forward"]` (a chain step)."""
    await gated(body)
    state.results.append(await relevo.publish(body["forward"], {"from": relevo.message().id}))


def sync_gated_forward(body: Any) -> None:
    _record(body)
    state.running += 1
    try:
        state.gate.wait(10)
    finally:
        state.running -= 1
    state.results.append(relevo.publish_sync(body["forward"], {"from": relevo.message().id}))
