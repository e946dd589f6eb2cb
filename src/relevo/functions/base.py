"""The Function protocol: a loaded handler the worker pool awaits once per message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Handler = Callable[[Any], Awaitable[Any] | Any]
"""Takes the decoded body and returns the result, or a coroutine the worker awaits for it.

The result (or exception) decides ack or nack (see docs/semantics.md). A handler that can answer at
once (a Lua handler that does not wait) returns the result itself, which spares a
coroutine per message; `async def` handlers simply return their coroutine.

A Lua function translates `nil, err` and `false` into a return of False or an
Exception instance, so the worker pool applies one rule to every kind of function.
"""


class Function(Protocol):
    """One function entry, loaded once and shared by the consumers that name it."""

    entry_id: str

    async def load(self) -> None:
        """Import or compile the code. Raises RelevoError naming the file (and line)."""

    async def close(self) -> None:
        """Release threads, interpreter states and the like. Idempotent."""

    @property
    def handler(self) -> Handler:
        """The coroutine function to await per message; valid after `load()`."""
