"""OpenTelemetry tracing through opentelemetry-api: a span per publish and per handling.

`install.py` decides whether an application gets the tracing middleware at all (only
when the application has set a tracer provider), without importing OpenTelemetry when
it never did; `middleware.py` makes the spans and carries `traceparent`.
"""
