"""`function.python`: an `async def` is awaited as is; a plain `def` runs in a worker thread."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from relevo.errors import LoadError
from relevo.functions.base import Handler
from relevo.functions.python_settings import PythonSettings


class PythonFunction:
    def __init__(self, entry_id: str, settings: PythonSettings, workers: int) -> None:
        self.entry_id = entry_id
        self.settings = settings
        self.workers = max(1, workers)
        self._handler: Handler | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def load(self) -> None:
        target = _resolve(self.entry_id, self.settings)
        if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - an object with async __call__
        ):
            self._handler = target
            return
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.entry_id)
        self._executor = executor

        async def in_thread(payload: Any) -> Any:
            # the copied context carries relevo.message() and the running app into the thread
            context = contextvars.copy_context()
            call = functools.partial(context.run, target, payload)
            return await asyncio.get_running_loop().run_in_executor(executor, call)

        self._handler = in_thread

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._handler = None

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            raise RuntimeError(f"{self.entry_id} is not loaded")
        return self._handler


def _resolve(entry_id: str, settings: PythonSettings) -> Callable[..., Any]:
    def fail(field: str, message: str) -> LoadError:
        return LoadError(f"{entry_id}: {message}", field)

    if callable(settings.handler):  # declared in code: the callable itself
        return settings.handler
    if settings.handler is not None:
        module_name, _, attr = settings.handler.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise fail("handler", f"cannot import {module_name!r}: {exc}") from exc
        origin = "handler"
    else:
        assert settings.source is not None
        path = Path(settings.source.removeprefix("file://"))
        module = _import_file(entry_id, path, fail)
        attr = settings.method or _only_public_callable(module, path, fail)
        origin = "method"
    target = getattr(module, attr, None)
    if not callable(target):
        where = settings.source.removeprefix("file://") if settings.source else module.__name__
        own = _own_functions(module)
        has = f"; it defines: {', '.join(own)}" if own else "; it defines no public function"
        raise fail(origin, f"{where} has no callable {attr!r}{has}")
    return target  # type: ignore[no-any-return]


def _own_functions(module: Any) -> list[str]:
    """The public functions a module defines itself (not those it imports)."""
    return [
        name for name, value in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(value)
        and value.__module__ == module.__name__
    ]


def _import_file(entry_id: str, path: Path, fail: Callable[[str, str], LoadError]) -> Any:
    """The module of a handler file, imported once and shared.

    A module already imported from the same file (by the application, or by a test that
    monkeypatches it) is used as it is, so the handler sees what the test patched; and
    two function entries naming one file share one module and its state.
    """
    path = path.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file is not None and file.endswith(path.name) and Path(file).resolve() == path:
            return module
    name = "relevo_fn_" + "".join(c if c.isalnum() else "_" for c in str(path.with_suffix("")))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise fail("source", f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise fail("source", f"{path} failed to import: {exc!r}") from exc
    return module


def forget_file(path: Path) -> None:
    """Drop the modules imported from `path`, so the next load reads the file again
    (a reload after the file changed)."""
    path = path.resolve()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file is not None and file.endswith(path.name) and Path(file).resolve() == path:
            del sys.modules[name]


def _only_public_callable(
    module: Any, path: Path, fail: Callable[[str, str], LoadError]
) -> str:
    """`main` if present; else the module's one public function defined in that file."""
    if callable(getattr(module, "main", None)):
        return "main"
    own = _own_functions(module)
    if len(own) == 1:
        return str(own[0])
    listed = f" ({', '.join(own)})" if own else ""
    raise fail("method", f"{path} defines no 'main' and {len(own)} public functions"
                         f"{listed}; name the handler with 'method'")
