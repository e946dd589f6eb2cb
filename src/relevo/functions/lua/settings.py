"""Config model of `function.lua` (no lupa import here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from relevo.durations import DurationS
from relevo.schema import StrictModel

LuaModule = Literal["json", "logger", "queue", "time"]
UnsafeLibrary = Literal["os", "io", "debug"]


class LuaSettings(StrictModel):
    """`source: file://x.lua`, `method` when the chunk returns a table, `modules` allowed.

    Limits (docs/functions/lua.md): `timeout` bounds a whole call, waits included;
    `max_blocking` bounds Lua running without yielding, i.e. how long one handler may
    hold the event loop (null disables it); `max_instructions` bounds a call's Lua
    instructions; `memory_limit` caps each Lua state, in bytes. `run_in_thread` runs the
    Lua code in worker threads (lupa releases the GIL), off the event loop; there
    `max_blocking` applies only when set explicitly.
    """

    source: str
    method: str | None = None
    modules: list[LuaModule] = []
    timeout: DurationS | None = Field(default=None, gt=0)  # wall-clock limit per call
    max_blocking: DurationS | None = Field(default=0.25, gt=0)  # per run between yields
    max_instructions: int | None = Field(default=None, ge=1000)  # per call
    memory_limit: int | None = Field(default=None, ge=1024 * 1024)  # bytes per Lua state
    run_in_thread: bool = False  # run Lua in worker threads: for handlers that compute long
    unsafe_libraries: list[UnsafeLibrary] = []  # trusted code only: escapes the sandbox

    @field_validator("source")
    @classmethod
    def _file_url(cls, value: str) -> str:
        if not value.startswith("file://") or len(value) == len("file://"):
            raise ValueError(f"source must be a file:// path to a .lua file, got {value!r}")
        return value
