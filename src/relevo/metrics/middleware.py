"""The metrics middleware: counts publishes and settlements, times handlers and waits.

It avoids the costly hooks: no coroutine around the handler (`handle`), no hook call
per ack. Each consumer's worker pool appends every handler call's time (and a first
delivery's start and headers) to its `ConsumerFigures` (the consumer's meter), which
buckets them in batches; acks are counted in the consumer's scope (by the pool for
its own acks, by the chain for the others); only failures reach the `settled` hook.
What remains per message is two clock reads and a few list appends.

Wait time needs each message's due time. A publish through this middleware stamps it in
the `x_due` header (epoch seconds: the publish time, or the end of a delayed publish's
delay); a first delivery that carries it observes `handler start - x_due`.
Redeliveries are not observed: their wait is the delay the retry policy chose.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from relevo.message import Delivery, Envelope, Headers
from relevo.metrics.figures import DUE_HEADER, OUTCOME_INDEX, ConsumerFigures, Figures
from relevo.middleware.base import ConsumerScope, Middleware, PublishNext, Settlement

_now = time.time


class MetricsMiddleware(Middleware):
    """Keeps `figures` up to date for every queue and consumer of one application."""

    settled_acks = False  # acks are counted in each consumer's scope

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    async def publish(
        self, queue_id: str, envelopes: Sequence[Envelope], due: float | None,
        call_next: PublishNext,
    ) -> None:
        stamp = due if due is not None else _now()
        shared: Headers | None = None  # one map for every header-less envelope of a batch
        for envelope in envelopes:
            headers = envelope.headers
            if headers is None:
                if shared is None:
                    shared = {DUE_HEADER: stamp}
                envelope.headers = shared
            else:
                headers[DUE_HEADER] = stamp
        await call_next(envelopes, due)
        published = self.figures.published
        published[queue_id] = published.get(queue_id, 0) + len(envelopes)

    def meter(self, scope: ConsumerScope) -> ConsumerFigures:
        figures = self.figures.consumer(scope.consumer_id, scope.queue_id)
        figures.count_acks_of(scope)
        return figures

    def settled(self, scope: ConsumerScope, delivery: Delivery, settlement: Settlement) -> None:
        """A failure's disposition: nack, retry, dead_letter (reject counts as one)."""
        figures = self.figures.consumer(scope.consumer_id, scope.queue_id)
        figures.outcomes[OUTCOME_INDEX[settlement.disposition.value]] += 1
