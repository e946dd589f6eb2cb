"""The metrics middleware: counts publishes and settlements, times handlers and waits.

It uses the cheap hooks of the seam only (`started` and `settled`, no coroutine around
the handler), and touches nothing but plain numbers in `Figures`, so a consumer pays a
few hundred nanoseconds per message for its metrics.

Wait time needs each message's due time. A publish through this middleware stamps it in
the `x_due` header (epoch seconds: the publish time, or the end of a delayed publish's
delay); a first delivery that carries it observes `now - x_due` when its handler starts.
Redeliveries are not observed: their wait is the delay the retry policy chose.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence

from relevo.message import Delivery, Disposition, Envelope, Headers
from relevo.metrics.figures import BUCKETS, OUTCOME_INDEX, ConsumerFigures, Figures
from relevo.middleware.base import ConsumerScope, Middleware, PublishNext, Settlement

DUE_HEADER = "x_due"
"""Epoch seconds at which a message published with metrics on became (or becomes) due."""

_ORIGINAL_QUEUE = "x_original_queue"  # a dead letter's copy: its x_due is the original's

_perf = time.perf_counter
_now = time.time
_ACK = Disposition.ACK


class MetricsMiddleware(Middleware):
    """Keeps `figures` up to date for every queue and consumer of one application."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self._consumers: dict[str, ConsumerFigures] = {}

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

    def started(self, scope: ConsumerScope, delivery: Delivery) -> None:
        # the hot path: no calls but the clock, bisect and dict operations
        figures = self._consumers.get(scope.consumer_id) or self._consumer(scope)
        now = _perf()
        figures.running[delivery] = now
        if delivery.attempts == 1:
            headers = delivery.headers
            due = headers.get(DUE_HEADER)
            if due is not None and _ORIGINAL_QUEUE not in headers:
                wait = now + self.figures.epoch_offset - due  # type: ignore[operator]
                if wait < 0.0:
                    wait = 0.0
                waits = figures.wait
                waits.counts[bisect_left(BUCKETS, wait)] += 1
                waits.total += wait

    def settled(self, scope: ConsumerScope, delivery: Delivery, settlement: Settlement) -> None:
        figures = self._consumers.get(scope.consumer_id) or self._consumer(scope)
        if settlement.disposition is _ACK:
            figures.outcomes[0] += 1
        else:
            figures.outcomes[OUTCOME_INDEX[settlement.disposition.value]] += 1
        start = figures.running.pop(delivery, None)
        if start is not None:
            took = _perf() - start
            processing = figures.processing
            processing.counts[bisect_left(BUCKETS, took)] += 1
            processing.total += took

    def _consumer(self, scope: ConsumerScope) -> ConsumerFigures:
        found = self._consumers[scope.consumer_id] = self.figures.consumer(
            scope.consumer_id, scope.queue_id
        )
        return found
