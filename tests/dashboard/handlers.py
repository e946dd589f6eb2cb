"""The handler of the dashboard tests' application: fails orders marked `fail` until fixed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import relevo


@dataclass
class State:
    fixed: bool = False
    handled: list[str] = field(default_factory=list)  # IDs acked, in order


state = State()


def reset() -> None:
    global state
    state = State()


async def handle(body: Any) -> Any:
    if isinstance(body, dict) and body.get("fail") and not state.fixed:
        raise ValueError(f"order {body.get('n')} has no customer")
    state.handled.append(relevo.message().id)
    return body
