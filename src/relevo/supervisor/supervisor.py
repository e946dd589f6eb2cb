"""Starting entries dependencies first, a level at a time, and stopping them in reverse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from relevo.errors import StopTimeout
from relevo.registry import Registry
from relevo.supervisor.service import Supervised
from relevo.supervisor.status import Status

log = logging.getLogger("relevo.supervisor")

Rebuild = Callable[[], tuple[Registry, dict[str, Supervised]]]


class Supervisor:
    def __init__(self, registry: Registry, services: dict[str, Supervised]) -> None:
        self.registry = registry
        self.services = services
        self._lock = asyncio.Lock()

    def status(self, entry_id: str) -> Status:
        return self.services[entry_id].status

    async def start(self, ids: Iterable[str]) -> None:
        """Start `ids` and everything they depend on. On failure, undo this call's starts."""
        async with self._lock:
            await self._start_ids(ids)

    async def stop(self, ids: Iterable[str]) -> None:
        """Stop `ids` and, first, everything that depends on them."""
        async with self._lock:
            wanted = set(ids)
            for entry_id in list(wanted):
                wanted |= self.registry.dependents(entry_id)
            await self._stop_ids(wanted)

    async def stop_first(self, ids: Iterable[str]) -> None:
        """Stop `ids` (entries nothing depends on) without holding the lock, so that
        their handlers can still start a queue they publish to while they finish."""
        await self._stop_ids(ids)

    async def stop_all(self, skip: Iterable[str] = ()) -> None:
        """Stop every entry but `skip` (those `stop_first` stopped already)."""
        async with self._lock:
            await self._stop_ids(set(self.services).difference(skip))

    async def replace(self, stop: Iterable[str], rebuild: Rebuild, start: Iterable[str]) -> None:
        """A reload: stop `stop` (dependents first), swap in the registry and services
        that `rebuild` returns, then start `start` plus whatever of `stop` was running.
        Services not stopped carry over untouched; a stop that times out is logged and
        its messages come back to their queue as on any stop."""
        async with self._lock:
            stop = list(stop)
            running = [i for i in stop if self.services[i].active]
            try:
                await self._stop_ids(stop)
            except StopTimeout as exc:
                log.warning("reload: %s", exc)
            self.registry, self.services = rebuild()
            await self._start_ids([*start, *(i for i in running if i in self.registry)])

    async def _start_ids(self, ids: Iterable[str]) -> None:
        wanted = self.registry.closure(ids)
        todo = [i for i in wanted if not self.services[i].active]
        started: list[str] = []
        for level in self.registry.levels(todo):
            results = await asyncio.gather(
                *(self.services[i].start() for i in level), return_exceptions=True
            )
            started.extend(i for i, r in zip(level, results, strict=True) if r is None)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                await self._stop_ids(started)
                raise errors[0]

    async def _stop_ids(self, ids: Iterable[str]) -> None:
        running = [
            i for i in ids if self.services[i].status not in (Status.UNKNOWN, Status.STOPPED)
        ]
        first_error: BaseException | None = None
        for level in reversed(self.registry.levels(running)):
            results = await asyncio.gather(
                *(self.services[i].stop() for i in level), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException) and (
                    first_error is None or isinstance(result, StopTimeout)
                ):
                    first_error = result
        if first_error is not None:
            raise first_error
