"""Config model of `function.lua` (no lupa import here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from relevo.durations import DurationS
from relevo.schema import StrictModel

LuaModule = Literal["json", "logger", "queue", "time"]


class LuaSettings(StrictModel):
    """`source: file://x.lua`, `method` when the chunk returns a table, `modules` allowed."""

    source: str
    method: str | None = None
    modules: list[LuaModule] = []
    timeout: DurationS | None = Field(default=None, gt=0)  # wall-clock limit per call
    max_instructions: int | None = Field(default=None, ge=1000)  # per call
    memory_limit: int | None = Field(default=None, ge=1024 * 1024)  # bytes per Lua state
