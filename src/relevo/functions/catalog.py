"""Function kinds: their config models and where their code lives (imported when used)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel

from relevo.functions.lua.settings import LuaSettings
from relevo.functions.python_settings import PythonSettings

if TYPE_CHECKING:
    from relevo.functions.base import Function


@dataclass(frozen=True)
class FunctionKind:
    kind: str
    settings: type[BaseModel]
    factory: str  # "module:Class"; the class takes (entry_id, settings, workers)

    def create(self, entry_id: str, settings: BaseModel, workers: int) -> Function:
        """A function of this kind; `settings` is an instance of `self.settings`."""
        if not isinstance(settings, self.settings):
            raise TypeError(f"{self.kind} takes {self.settings.__name__}, not {settings!r}")
        module_name, _, attr = self.factory.partition(":")
        function_class = getattr(importlib.import_module(module_name), attr)
        return cast("Function", function_class(entry_id, settings, workers))


FUNCTION_KINDS: dict[str, FunctionKind] = {
    kind.kind: kind
    for kind in (
        FunctionKind("function.python", PythonSettings, "relevo.functions.python:PythonFunction"),
        FunctionKind("function.lua", LuaSettings, "relevo.functions.lua.function:LuaFunction"),
    )
}
