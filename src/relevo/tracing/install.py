"""Whether an application traces, decided once when it opens.

The tracing middleware is installed only where `opentelemetry-api` is imported and a
tracer provider has been set (`trace.set_tracer_provider(...)`), or where
`RELEVO_TRACING=on` asks for it. Otherwise nothing is installed and a message pays
nothing for tracing. `RELEVO_TRACING=off` turns it off even with a provider set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from relevo.middleware.base import Middleware
from relevo.registry import Registry

SYSTEMS = {
    "queue.driver.memory": "memory",
    "queue.driver.amqp": "rabbitmq",
    "queue.driver.redis": "redis",
    "queue.driver.postgres": "postgresql",
}
"""Driver kind -> OpenTelemetry's `messaging.system`."""


def provider_is_set() -> bool:
    """True if the process set a tracer provider (never imports OpenTelemetry itself)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False  # nobody imported it, so nobody set a provider
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def wanted() -> bool:
    setting = os.environ.get("RELEVO_TRACING", "").strip().lower()
    if setting in {"off", "0", "false", "no"}:
        return False
    if setting in {"on", "1", "true", "yes"}:
        return True
    return provider_is_set()


def tracing_middleware(registry: Registry, tracer: Any = None) -> Middleware | None:
    """The middleware for this application, or None when it does not trace.

    Given a `tracer` (an OpenTelemetry Tracer), always the middleware, using it.
    """
    if tracer is None and not wanted():
        return None
    from relevo.tracing.middleware import TracingMiddleware  # imports opentelemetry

    systems = {}
    for entry in registry.of_kind("queue.queue"):
        driver = registry.entries.get(entry.settings.driver)
        systems[entry.id] = SYSTEMS.get(driver.kind, "other") if driver else "other"
    return TracingMiddleware(systems, tracer)
