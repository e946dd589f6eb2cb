"""A dashboard served for real (uvicorn on a free port) in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from starlette.applications import Starlette

from relevo.app import App


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """Start with `with Served(app, web) as served:`; `served.call(fn, ...)` runs on its loop."""

    def __init__(self, app: App, web: Starlette) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(
            web, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
        ))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._server.serve()

        asyncio.run(main())

    def __enter__(self) -> Served:
        self._thread.start()
        self._ready.wait(10)
        for _ in range(200):
            if self._server.started:
                return self
            threading.Event().wait(0.05)
        raise RuntimeError("the dashboard server did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def call(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
             timeout_s: float = 15) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout_s)
