"""A dashboard's background loop, started on first use and stopped with the dashboard.

A dashboard mounted into another Starlette app gets no lifespan events of its own, so
its samplers start when the first request needs them.
"""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundLoop:
    """Runs `_run` as one task: `ensure_started` on each use, `stop` at the end."""

    task_name = "relevo-dashboard"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        raise NotImplementedError
