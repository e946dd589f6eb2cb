"""Wiring metrics into an application: one middleware for the app, one endpoint per entry.

Called by the composition root only when the application has a `metrics.prometheus`
entry; prometheus-client is imported here, so an application without one never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from relevo.metrics.endpoint import PrometheusEndpoint
from relevo.metrics.figures import Figures
from relevo.metrics.middleware import MetricsMiddleware
from relevo.metrics.settings import PrometheusSettings
from relevo.metrics.sources import AppSources, CountedQueue
from relevo.registry import Registry

KIND = "metrics.prometheus"


class Idle:
    """A metrics entry in a child process: the parent serves the one endpoint."""

    async def start(self) -> None:
        """Nothing to serve here."""

    async def stop(self) -> None:
        """Nothing was started."""


def install(
    registry: Registry,
    middleware: MetricsMiddleware | None,
    queues: Callable[[], Mapping[str, CountedQueue]],
    drivers: Callable[[], Mapping[str, object]],
    entries: Callable[[], list[str]],
    running: Callable[[str], bool],
    in_flight: Callable[[], dict[str, int]],
    *,
    serve: bool = True,
) -> tuple[MetricsMiddleware, AppSources, dict[str, PrometheusEndpoint | Idle]]:
    """The app's metrics middleware (`middleware` again, after a reload), what a scrape
    reads of the app, and the service of each metrics entry (an endpoint, or with `serve`
    False an idle one). `queues`, `drivers` and `entries` are read at scrape time (a
    reload replaces them)."""
    if middleware is None:
        middleware = MetricsMiddleware(Figures())
    figures = middleware.figures
    for entry in registry.of_kind("queue.queue"):
        figures.queue(entry.id)
    for entry in registry.of_kind("queue.consumer"):
        figures.consumer(entry.id, entry.settings.queue)
    kinds = registry.of_kind(KIND)
    cache_s = min(entry.settings.queue_cache for entry in kinds)
    sources = AppSources(figures, queues, drivers, entries, running, cache_s, in_flight)
    services: dict[str, PrometheusEndpoint | Idle] = {}
    for entry in kinds:
        settings: PrometheusSettings = entry.settings
        services[entry.id] = (
            PrometheusEndpoint(entry.id, settings.listen, sources.collect) if serve else Idle()
        )
    return middleware, sources, services
