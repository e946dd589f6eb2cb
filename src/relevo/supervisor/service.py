"""One supervised entry: its status, timeouts, failure watch and restarts."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from relevo.backoff import Backoff
from relevo.errors import DriverUnavailable, RelevoError
from relevo.supervisor.status import Status

log = logging.getLogger("relevo.supervisor")

STABLE_RUN_S = 60.0
"""A service that ran this long without failing starts its restart count afresh."""


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Supervised:
    def __init__(
        self,
        entry_id: str,
        service: Service,
        *,
        start_timeout_s: float,
        stop_timeout_s: float,
        backoff: Backoff,
        is_driver: bool = False,
    ) -> None:
        self.entry_id = entry_id
        self.service = service
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.backoff = backoff
        self.is_driver = is_driver
        self.status = Status.UNKNOWN
        self._watch: asyncio.Task[None] | None = None
        self._restarts = 0
        self._started_at = 0.0

    @property
    def active(self) -> bool:
        return self.status in (Status.STARTING, Status.RUNNING)

    async def start(self) -> None:
        self.status = Status.STARTING
        try:
            async with asyncio.timeout(self.start_timeout_s):
                await self.service.start()
        except TimeoutError:
            self.status = Status.FAILED
            message = f"{self.entry_id} did not start within {self.start_timeout_s}s"
            raise (DriverUnavailable if self.is_driver else RelevoError)(message) from None
        except DriverUnavailable as exc:
            self.status = Status.FAILED
            if self.entry_id in str(exc):
                raise
            raise DriverUnavailable(f"{self.entry_id}: {exc}") from exc  # which entry failed
        except BaseException:
            self.status = Status.FAILED
            raise
        self.status = Status.RUNNING
        self._started_at = asyncio.get_running_loop().time()
        if hasattr(self.service, "wait_failure") and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_failures())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.status in (Status.UNKNOWN, Status.STOPPED):
            return
        self.status = Status.STOPPING
        try:
            # services with handlers enforce stop_timeout themselves; this is the backstop
            async with asyncio.timeout(self.stop_timeout_s + 5.0):
                await self.service.stop()
        except BaseException:
            self.status = Status.FAILED
            raise
        self.status = Status.STOPPED

    async def _watch_failures(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            error = await self.service.wait_failure()  # type: ignore[attr-defined]
            log.error("%s failed: %r", self.entry_id, error)
            self.status = Status.FAILED
            if loop.time() - self._started_at >= STABLE_RUN_S:
                self._restarts = 0
            try:
                await self.service.stop()
            except Exception as exc:
                log.warning("%s: stop after failure raised %r", self.entry_id, exc)
            while True:
                self._restarts += 1
                if self.backoff.gives_up(self._restarts):
                    log.error("%s: giving up after %d restarts", self.entry_id,
                              self.backoff.max_attempts)
                    self._watch = None
                    return
                await asyncio.sleep(self.backoff.delay_s(self._restarts))
                try:
                    self.status = Status.STARTING
                    async with asyncio.timeout(self.start_timeout_s):
                        await self.service.start()
                except Exception as exc:
                    self.status = Status.FAILED
                    log.warning("%s: restart %d failed: %r", self.entry_id, self._restarts, exc)
                    continue
                self.status = Status.RUNNING
                self._started_at = loop.time()
                break
