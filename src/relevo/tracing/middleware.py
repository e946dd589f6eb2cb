"""Spans `publish <queue>` (PRODUCER) and `process <queue>` (CONSUMER), OpenTelemetry's
messaging conventions, and the W3C `traceparent` header that links them.

The publish span is current while the message is stored and its context goes into the
message's `traceparent` (and `tracestate`) header; the process span is a child of that
context, and the handler runs inside it, so what the handler publishes is its child.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relevo import __name__ as _package
from relevo.message import Delivery, Envelope
from relevo.middleware.base import ConsumerScope, HandleNext, Middleware, PublishNext

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
BATCH_COUNT = "messaging.batch.message_count"
CONSUMER_GROUP = "messaging.consumer.group.name"
DELIVERY_COUNT = "messaging.message.delivery_count"


class TracingMiddleware(Middleware):
    """Makes the spans of one application; `systems` maps queue IDs to messaging.system."""

    def __init__(self, systems: Mapping[str, str], tracer: trace.Tracer | None = None) -> None:
        self.systems = dict(systems)
        self.tracer = tracer or trace.get_tracer(_package)
        self.propagator = TraceContextTextMapPropagator()

    async def publish(
        self, queue_id: str, envelopes: Sequence[Envelope], due: float | None,
        call_next: PublishNext,
    ) -> None:
        attributes: dict[str, Any] = {
            SYSTEM: self.systems.get(queue_id, "other"),
            DESTINATION: queue_id,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "publish",
        }
        if len(envelopes) == 1:
            attributes[MESSAGE_ID] = envelopes[0].id
        else:
            attributes[BATCH_COUNT] = len(envelopes)
        with self.tracer.start_as_current_span(
            f"publish {queue_id}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            self.propagator.inject(carrier)
            if carrier:
                for envelope in envelopes:
                    if envelope.headers is None:
                        envelope.headers = dict(carrier)
                    else:
                        envelope.headers.update(carrier)
            await call_next(envelopes, due)

    async def handle(
        self, scope: ConsumerScope, delivery: Delivery, payload: Any, call_next: HandleNext
    ) -> Any:
        headers = delivery.headers
        parent = self.propagator.extract(headers) if "traceparent" in headers else None
        attributes: dict[str, Any] = {
            SYSTEM: self.systems.get(scope.queue_id, "other"),
            DESTINATION: scope.queue_id,
            MESSAGE_ID: delivery.id,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            CONSUMER_GROUP: scope.consumer_id,
            DELIVERY_COUNT: delivery.attempts,
        }
        with self.tracer.start_as_current_span(
            f"process {scope.queue_id}", context=parent, kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ):
            return await call_next(delivery, payload)
