"""The figures behind the metrics, kept as plain Python numbers on the event loop thread.

The hot path only adds to ints and bucket lists (no locks, no label lookups); turning
them into Prometheus families happens at scrape time. A `snapshot()` is plain data
(dicts, lists, numbers), so a child process can send its figures to the parent, which
adds them up with `merge()`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)
"""Histogram upper bounds in seconds: half a millisecond to ten minutes (then +Inf)."""

OUTCOMES: tuple[str, ...] = ("ack", "nack", "retry", "dead_letter")
"""The `outcome` label values, in the order `ConsumerFigures.outcomes` counts them."""

OUTCOME_INDEX: dict[str, int] = {
    "ack": 0, "nack": 1, "retry": 2, "dead_letter": 3,
    "reject": 3,  # rejected without a dead-letter queue: its end as a failure, like one
}
"""A settlement's disposition value -> its slot in `outcomes`."""

QUEUE_STATES: tuple[str, ...] = ("ready", "in_flight", "delayed")

Snapshot = dict[str, Any]
"""{"published": {queue: n}, "wait": {queue: hist}, "consumers": {consumer: {...}},
"queues": {queue: {state: n}}, "reconnects": {driver: n}, "up": {entry: 0|1}};
a histogram is [bucket counts (not cumulative, +Inf last)..., sum]."""


class Histogram:
    """Counts per bucket (not cumulative) and the sum of what was observed."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def as_list(self) -> list[float]:
        return [*self.counts, self.total]


class ConsumerFigures:
    """One consumer's settlements per outcome, handler times and deliveries in its handlers."""

    __slots__ = ("consumer_id", "outcomes", "processing", "queue_id", "running", "wait")

    def __init__(self, consumer_id: str, queue_id: str, wait: Histogram) -> None:
        self.consumer_id = consumer_id
        self.queue_id = queue_id
        self.wait = wait  # its queue's (shared by the queue's consumers)
        self.outcomes = [0, 0, 0, 0]
        self.processing = Histogram()
        self.running: dict[Any, float] = {}  # delivery -> when its handler started

    def in_flight(self) -> int:
        """Deliveries in a handler; forgets those settled behind the hooks' back (a
        stopping consumer gives abandoned deliveries back to the driver directly)."""
        running = self.running
        for delivery in [d for d in running if d.settled]:
            del running[delivery]
        return len(running)


class Figures:
    """Every figure of one process: published per queue, waits, consumers' figures."""

    def __init__(self) -> None:
        self.published: dict[str, int] = {}
        self.waits: dict[str, Histogram] = {}
        self.consumers: dict[str, ConsumerFigures] = {}
        self.epoch_offset = 0.0
        self.sync_clock()

    def sync_clock(self) -> None:
        """`perf_counter() + epoch_offset` is epoch time (the hot path reads one clock)."""
        self.epoch_offset = time.time() - time.perf_counter()

    def queue(self, queue_id: str) -> None:
        """Make the queue's series exist (at 0) before its first message."""
        self.published.setdefault(queue_id, 0)
        if queue_id not in self.waits:
            self.waits[queue_id] = Histogram()

    def consumer(self, consumer_id: str, queue_id: str) -> ConsumerFigures:
        found = self.consumers.get(consumer_id)
        if found is None:
            self.queue(queue_id)
            found = ConsumerFigures(consumer_id, queue_id, self.waits[queue_id])
            self.consumers[consumer_id] = found
        return found

    def snapshot(self) -> Snapshot:
        self.sync_clock()
        return {
            "published": dict(self.published),
            "wait": {q: h.as_list() for q, h in self.waits.items()},
            "consumers": {
                c.consumer_id: {
                    "queue": c.queue_id,
                    "outcomes": list(c.outcomes),
                    "processing": c.processing.as_list(),
                    "in_flight": c.in_flight(),
                }
                for c in self.consumers.values()
            },
        }


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots, series by series."""
    total: Snapshot = {}
    for snap in snapshots:
        for section, series in snap.items():
            into = total.setdefault(section, {})
            for key, value in series.items():
                into[key] = _add(into.get(key), value)
    return total


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return _copy(b)
    if isinstance(b, dict):
        return {k: a.get(k) if k == "queue" else _add(a.get(k), v) for k, v in b.items()}
    if isinstance(b, list):
        return [x + y for x, y in zip(a, b, strict=True)]
    if isinstance(b, str):
        return b
    return a + b


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value
