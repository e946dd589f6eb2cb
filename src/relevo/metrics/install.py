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


def install(
    registry: Registry,
    queues: Mapping[str, CountedQueue],
    drivers: Mapping[str, object],
    running: Callable[[str], bool],
) -> tuple[MetricsMiddleware, dict[str, PrometheusEndpoint]]:
    """The app's metrics middleware and the endpoint service of each metrics entry.

    `queues` and `drivers` may still be filling: they are read at scrape time.
    """
    figures = Figures()
    for entry in registry.of_kind("queue.queue"):
        figures.queue(entry.id)
    for entry in registry.of_kind("queue.consumer"):
        figures.consumer(entry.id, entry.settings.queue)
    endpoints: dict[str, PrometheusEndpoint] = {}
    for entry in registry.of_kind(KIND):
        settings: PrometheusSettings = entry.settings
        sources = AppSources(
            figures, queues, drivers, sorted(e.id for e in registry), running,
            settings.queue_cache,
        )
        endpoints[entry.id] = PrometheusEndpoint(entry.id, settings.listen, sources.collect)
    return MetricsMiddleware(figures), endpoints
