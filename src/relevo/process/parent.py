"""The parent of `relevo run --processes N`: keep N children running, recycle them,
stop them all on SIGINT/SIGTERM. It runs no application itself.

Exit codes: 0 every child stopped gracefully; 1 a child's stop timed out (or it had to
be killed), or a child kept failing past `restart.max_attempts`; 128 + signal number
on a second signal, after killing the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevo.backoff import Backoff
from relevo.config.build import load_registry
from relevo.errors import ConfigError
from relevo.metrics.children import ChildrenFigures
from relevo.process.handle import ChildProcess, preload
from relevo.process.policy import check_shareable, restart_policy, stop_budget_s
from relevo.registry import Registry
from relevo.supervisor.service import STABLE_RUN_S

log = logging.getLogger("relevo.process")


@dataclass(frozen=True)
class Limits:
    """Recycle a child past either mark (None: no limit)."""

    max_messages: int | None = None
    max_memory: int | None = None  # bytes of resident memory

    def exceeded(self, child: ChildProcess) -> str | None:
        if self.max_messages is not None and child.processed >= self.max_messages:
            return f"{child.processed} messages processed (limit {self.max_messages})"
        if (self.max_memory is not None and child.rss >= self.max_memory
                and not child.memory_exempt):
            return f"{child.rss // 2**20} MiB resident (limit {self.max_memory // 2**20} MiB)"
        return None


class Parent:
    def __init__(self, path: str, registry: Registry, processes: int, *,
                 limits: Limits = Limits(), reload: bool = False,
                 log_level: str = "INFO", log_format: str = "text",
                 status_interval_s: float = 0.0) -> None:
        self.path = path
        self.registry = registry
        self.processes = processes
        self.limits = limits
        self.reload = reload
        self.log_level = log_level
        self.log_format = log_format
        self.status_interval_s = status_interval_s
        self.policy: Backoff = restart_policy(registry)
        self.children: set[ChildProcess] = set()
        self._stopping = asyncio.Event()
        self._gave_up = False
        self._signals = 0
        self._recycle_due: dict[int, asyncio.Event] = {}
        self._spawning: set[asyncio.Future[ChildProcess]] = set()
        self.metrics = ChildrenFigures() if registry.of_kind("metrics.") else None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        preload(self.registry)
        endpoints = await self._serve_metrics()
        slots = [loop.create_task(self._keep(n)) for n in range(1, self.processes + 1)]
        watcher = loop.create_task(self._watch()) if self.reload else None
        status = loop.create_task(self._status()) if self.status_interval_s > 0 else None
        log.info("parent %d: running %d processes; press Ctrl-C to stop",
                 os.getpid(), self.processes)
        await self._stopping.wait()
        for task in [*slots, *([watcher] if watcher else []), *([status] if status else [])]:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        try:
            return await self._stop_children()
        finally:
            for endpoint in endpoints:
                await endpoint.stop()

    async def _serve_metrics(self) -> list[Any]:
        """One endpoint per auto-started metrics entry, serving the children's sum."""
        if self.metrics is None:
            return []
        from relevo.metrics.endpoint import PrometheusEndpoint  # loads prometheus-client

        endpoints = []
        for entry in self.registry.of_kind("metrics."):
            if entry.head.lifecycle.auto_start:
                endpoint = PrometheusEndpoint(entry.id, entry.settings.listen,
                                              self.metrics.collect)
                await endpoint.start()
                log.info("parent %d: metrics of every child at http://%s/metrics",
                         os.getpid(), entry.settings.listen)
                endpoints.append(endpoint)
        return endpoints

    async def _status(self) -> None:
        """A status line per interval: messages handled per second across the children."""
        seen: dict[ChildProcess, int] = {}
        while True:
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(self.status_interval_s)
            seconds = asyncio.get_running_loop().time() - started
            children = sorted(self.children, key=lambda c: c.slot)
            done = sum(max(0, c.processed - seen.get(c, 0)) for c in children)
            seen = {c: c.processed for c in children}
            log.info("status: %.1f processed/s across %d children (%s)", done / seconds,
                     len(children), ", ".join(f"{c.slot}: {c.processed:,}" for c in children))

    # -- signals and shutdown -------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.warning("%s again: killing %d children", name, len(self.children))
            for child in self.children:
                child.kill()
            os._exit(128 + signum)
        log.info("%s: stopping %d children gracefully", name, len(self.children))
        self._stopping.set()

    async def _stop_children(self) -> int:
        await asyncio.gather(*self._spawning, return_exceptions=True)
        children = list(self.children)
        for child in children:
            child.request_stop()
        budget = stop_budget_s(self.registry) + 5.0
        late: set[asyncio.Future[int]] = set()
        if children:
            _, late = await asyncio.wait([c.exited for c in children], timeout=budget)
        failed = self._gave_up
        for child in children:
            if child.exited in late:
                log.error("%s did not stop within %.1fs; killing it", child, budget)
                child.kill()
                failed = True
            elif child.returncode != 0:
                log.error("%s %s while stopping", child, child.exit_reason())
                failed = True
        if late:
            await asyncio.wait([c.exited for c in children])
        code = 1 if failed else 0
        log.info("parent %d: every child has stopped; exit code %d", os.getpid(), code)
        return code

    # -- one slot: start, restart, recycle ------------------------------------------

    async def _spawn(self, slot: int) -> ChildProcess:
        # shielded: a stop arriving mid-spawn must still find the child in self.children
        task = asyncio.ensure_future(self._register(slot))
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)
        return await asyncio.shield(task)

    async def _register(self, slot: int) -> ChildProcess:
        child = await ChildProcess.spawn(self.path, slot, self.log_level, self.log_format)
        self.children.add(child)
        child.exited.add_done_callback(lambda _: self.children.discard(child))
        metrics = self.metrics
        if metrics is not None:
            child.on_metrics = metrics.update
            assert child.reading is not None  # its last snapshot is read before this ends
            child.reading.add_done_callback(lambda _: metrics.retire(child))
        if self.limits.max_messages is not None or self.limits.max_memory is not None:
            child.on_stats = self._check_limits
        return child

    def _check_limits(self, child: ChildProcess) -> None:
        due = self._recycle_due.get(child.slot)
        if due is None or due.is_set() or child.retiring:
            return
        if not child.checked:  # its first report, just after it got ready
            child.checked = True
            limit = self.limits.max_memory
            if limit is not None and child.rss >= limit:
                log.warning("%s uses %d MiB once started, more than --max-memory-per-process "
                            "(%d MiB): it will not be recycled for its memory", child,
                            child.rss // 2**20, limit // 2**20)
                child.memory_exempt = True  # else every replacement would be replaced again
        reason = self.limits.exceeded(child)
        if reason is not None:
            log.info("%s: recycling after %s", child, reason)
            due.set()

    async def _keep(self, slot: int) -> None:
        """Keep one child running in `slot` until the parent stops."""
        restarts = 0
        due = self._recycle_due[slot] = asyncio.Event()
        child = await self._spawn(slot)
        while True:
            recycle = asyncio.ensure_future(due.wait())
            waiting: list[asyncio.Future[Any]] = [child.exited, recycle]
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                recycle.cancel()
            if due.is_set() and child.alive:
                child, restarts = await self._recycle(slot, child, restarts)
                due.clear()
                continue
            ran_s = child.uptime_s()
            if ran_s >= STABLE_RUN_S:
                restarts = 0
            restarts += 1
            why = child.exit_reason()
            error = ""
            if child.error is not None:
                why += " before it was ready"
                error = f": {child.error}"
            if self.policy.gives_up(restarts):
                log.error("%s %s; giving up after %d restarts%s", child, why,
                          self.policy.max_attempts, error)
                self._gave_up = True
                self._stopping.set()
                return
            delay = self.policy.delay_s(restarts)
            log.error("%s %s; restart %d in %.1fs%s", child, why, restarts, delay, error)
            await asyncio.sleep(delay)
            child = await self._spawn(slot)

    async def _recycle(self, slot: int, old: ChildProcess,
                       restarts: int) -> tuple[ChildProcess, int]:
        """Start the replacement; once it is ready, stop the old child gracefully."""
        new = await self._spawn(slot)
        if await new.wait_ready():
            log.info("%s takes over from %s, which stops gracefully", new, old)
            old.request_stop()
            asyncio.get_running_loop().create_task(self._retire(old))
            return new, 0
        restarts += 1
        delay = self.policy.delay_s(restarts)
        why = new.exit_reason() + (f": {new.error}" if new.error else "")
        log.error("%s, the replacement of %s, %s; %s keeps running; next try in %.1fs",
                  new, old, why, old, delay)
        await asyncio.sleep(delay)
        return old, restarts

    async def _retire(self, old: ChildProcess) -> None:
        code = await old.exited
        if code == 0:
            log.info("%s recycled", old)
        else:
            log.warning("%s %s while stopping to be recycled", old, old.exit_reason())

    # -- live reload ----------------------------------------------------------------

    async def _watch(self) -> None:
        from relevo.reload.watch import watch_config

        await watch_config(Path(self.path), lambda: self.registry, self._reload, self._stopping)

    async def _reload(self) -> None:
        """Validate once here, so an invalid config is reported once; then every child
        reloads (children started later load the new config anyway)."""
        try:
            registry = load_registry(self.path)
            check_shareable(registry, self.processes)
        except ConfigError as exc:
            log.error("reload refused, the running children carry on unchanged:\n%s", exc)
            return
        self.registry = registry
        self.policy = restart_policy(registry)
        for child in list(self.children):
            if not child.retiring:
                child.request_reload()


def run_parent(path: str, registry: Registry, processes: int, *, limits: Limits,
               reload: bool, log_level: str, log_format: str = "text",
               status_interval_s: float = 0.0) -> int:
    parent = Parent(path, registry, processes, limits=limits, reload=reload,
                    log_level=log_level, log_format=log_format,
                    status_interval_s=status_interval_s)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(parent.run())
    return 1
