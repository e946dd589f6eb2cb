"""The middlewares that watch an app, metrics and tracing, each only when configured.

The metric figures live as long as the app: built again for a reloaded registry, they
keep counting in the same ones. prometheus-client is imported only for an app with a
`metrics.` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from relevo.middleware.base import Middleware
from relevo.queue import Queue
from relevo.registry import Registry
from relevo.supervisor.service import Service, Supervised
from relevo.tracing.install import tracing_middleware

if TYPE_CHECKING:
    from relevo.metrics.middleware import MetricsMiddleware
    from relevo.metrics.sources import AppSources


class Observing:
    """An app's metrics and tracing; `queues`, `drivers`, `entries`, `running` and
    `in_flight` are what a scrape reads of the app, at scrape time (a reload replaces
    them)."""

    def __init__(
        self,
        queues: Callable[[], Mapping[str, Queue]],
        drivers: Callable[[], Mapping[str, object]],
        entries: Callable[[], list[str]],
        running: Callable[[str], bool],
        in_flight: Callable[[], dict[str, int]],
    ) -> None:
        self._reads = (queues, drivers, entries, running, in_flight)
        self.metrics: MetricsMiddleware | None = None
        self.sources: AppSources | None = None

    def middlewares(
        self, registry: Registry, reuse: Mapping[str, Supervised], *, serve: bool
    ) -> tuple[list[Middleware], dict[str, Service]]:
        """Metrics then tracing, those configured, and the services of the metrics
        entries (an endpoint; one that does not `serve`, in a child process, is idle)."""
        observing: list[Middleware] = []
        services: dict[str, Service] = {}
        if registry.of_kind("metrics."):
            from relevo.metrics.install import install  # loads prometheus-client

            self.metrics, self.sources, endpoints = install(
                registry, self.metrics, *self._reads, serve=serve
            )
            observing.append(self.metrics)
            for entry_id, endpoint in endpoints.items():
                services[entry_id] = reuse[entry_id].service if entry_id in reuse else endpoint
        tracing = tracing_middleware(registry)
        if tracing is not None:
            observing.append(tracing)
        return observing, services

    def counted(self) -> dict[str, Any] | None:
        """This process's metric figures, without queue counts (None without metrics)."""
        return None if self.sources is None else dict(self.sources.counted())

    async def snapshot(self) -> dict[str, Any] | None:
        """`counted()` plus the queues' counts, read from their drivers."""
        return None if self.sources is None else dict(await self.sources.collect())
