"""Function kinds: their config models and where their code lives (imported when used)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from relevo.functions.lua.settings import LuaSettings
from relevo.functions.python_settings import PythonSettings


@dataclass(frozen=True)
class FunctionKind:
    kind: str
    settings: type[BaseModel]
    factory: str  # "module:Class"; the class takes (entry_id, settings, workers)

    def create(self, entry_id: str, settings: BaseModel, workers: int) -> Any:
        module_name, _, attr = self.factory.partition(":")
        function_class = getattr(importlib.import_module(module_name), attr)
        return function_class(entry_id, settings, workers)


FUNCTION_KINDS: dict[str, FunctionKind] = {
    kind.kind: kind
    for kind in (
        FunctionKind("function.python", PythonSettings, "relevo.functions.python:PythonFunction"),
        FunctionKind("function.lua", LuaSettings, "relevo.functions.lua.function:LuaFunction"),
    )
}
