"""Functions as supervised services, and loading them all once to check a config."""

from __future__ import annotations

from collections.abc import Collection

from relevo.app.located import located
from relevo.errors import ConfigError, ConfigIssue, RelevoError
from relevo.functions.base import Function
from relevo.functions.catalog import FUNCTION_KINDS
from relevo.registry import Entry, Registry


class FunctionService:
    """A function entry's service: starting it loads the code, with load errors located
    at the entry's file and line."""

    def __init__(self, function: Function, entry: Entry) -> None:
        self.function = function
        self.entry = entry

    async def start(self) -> None:
        try:
            await self.function.load()
        except RelevoError as exc:
            raise located(exc, self.entry) from exc

    async def stop(self) -> None:
        await self.function.close()


async def check_functions(registry: Registry, only: Collection[str] | None = None) -> None:
    """Import every Python handler and compile every Lua source, then let them go.

    What `relevo validate` does unless told `--no-import`: nothing starts, and a
    function that cannot load is a ConfigError naming its entry's file and line.
    `only` limits it to those entries (a reload checks its new and changed ones).
    """
    issues: list[ConfigIssue] = []
    for entry in registry.of_kind("function."):
        if only is not None and entry.id not in only:
            continue
        service = FunctionService(FUNCTION_KINDS[entry.kind].create(entry.id, entry.settings, 1),
                                  entry)
        try:
            await service.start()
        except ConfigError as exc:
            issues.extend(exc.issues)
        else:
            await service.stop()
    if issues:
        raise ConfigError(issues)
