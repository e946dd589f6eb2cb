"""The figures behind the metrics, kept as plain Python numbers on the event loop thread.

The hot path only adds to ints and bucket lists (no locks, no label lookups); turning
them into Prometheus families happens at scrape time. A `snapshot()` is plain data
(dicts, lists, numbers), so a child process can send its figures to the parent, which
adds them up with `merge()`.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any, Protocol

from relevo.message import Headers

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

DUE_HEADER = "x_due"
"""Epoch seconds at which a message published with metrics on became (or becomes) due."""

ORIGIN_HEADER = "x_original_queue"
"""Set on a dead letter's copy, which keeps the original's `x_due`: its wait is not observed."""

Snapshot = dict[str, Any]
"""{"published": {queue: n}, "wait": {queue: hist}, "consumers": {consumer: {...}},
"queues": {queue: {state: n}}, "reconnects": {driver: n}, "up": {entry: 0|1}};
a histogram is [bucket counts (not cumulative, +Inf last)..., sum]."""


PENDING_MAX = 4096
"""Observations a histogram holds unsorted before it buckets them all at once."""


class Histogram:
    """Counts per bucket (not cumulative) and the sum of what was observed.

    The hot path only appends to `pending` (cheaper than a bisect per value); `flush`
    sorts them and buckets the lot with one bisect per bucket bound, when `pending` is
    full and before every snapshot. Values below 0 count as 0.
    """

    __slots__ = ("counts", "pending", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.pending: list[float] = []

    def observe(self, value: float) -> None:
        pending = self.pending
        pending.append(value)
        if len(pending) > PENDING_MAX:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = sorted(self.pending)
        self.pending.clear()
        counts, below = self.counts, 0
        for index, bound in enumerate(BUCKETS):
            upto = bisect_right(values, bound)
            counts[index] += upto - below
            below = upto
        counts[-1] += len(values) - below
        self.total += sum(values[bisect_left(values, 0.0):])

    def as_list(self) -> list[float]:
        self.flush()
        return [*self.counts, self.total]


class Acks(Protocol):
    acked: int


class ConsumerFigures:
    """One consumer's settlements per outcome and handler times, and its queue's waits.

    It is the consumer's `Meter`: its worker pool appends each handler call's seconds
    to `spent`, and each first delivery's handler start and headers to `starts` and
    `headers`, with no call per message; `flush` (when `spent` is full, and before
    every snapshot) turns them into the histograms. Acks are counted by the consumer's
    middleware chain (`scope.acked`), failures by the `settled` hook.
    """

    __slots__ = ("_acks", "_acks_before", "batch", "clock", "consumer_id", "headers",
                 "outcomes", "processing", "queue_id", "spent", "starts", "wait")

    def __init__(self, consumer_id: str, queue_id: str, wait: Histogram, clock: Clock) -> None:
        self.consumer_id = consumer_id
        self.queue_id = queue_id
        self.wait = wait  # its queue's (shared by the queue's consumers)
        self.clock = clock
        self.outcomes = [0, 0, 0, 0]  # ack stays 0 here: see acked()
        self.processing = Histogram()
        self.spent: list[float] = []
        self.starts: list[float] = []
        self.headers: list[Headers] = []
        self.batch = PENDING_MAX
        self._acks: Acks | None = None
        self._acks_before = 0  # acks of the consumer's earlier runs

    def count_acks_of(self, scope: Acks) -> None:
        """The consumer (re)started with a new scope: keep what the old one counted."""
        if self._acks is not None:
            self._acks_before += self._acks.acked
        self._acks = scope

    def acked(self) -> int:
        return self._acks_before + (self._acks.acked if self._acks is not None else 0)

    def flush(self) -> None:
        """Bucket the raw figures the pool appended, then empty the lists in place."""
        if self.spent:
            self.processing.pending.extend(self.spent)
            self.spent.clear()
            self.processing.flush()
        if self.starts:
            offset = self.clock.epoch_offset
            waits = self.wait.pending
            for started, headers in zip(self.starts, self.headers, strict=True):
                due = headers.get(DUE_HEADER)
                # a dead letter's copy keeps the original's `x_due`: not observed
                if due is not None and ORIGIN_HEADER not in headers:
                    waits.append(started + offset - due)  # type: ignore[operator]
            self.starts.clear()
            self.headers.clear()
            self.wait.flush()


class Clock:
    """`perf_counter() + epoch_offset` is epoch time: the hot path reads one clock."""

    def __init__(self) -> None:
        self.epoch_offset = 0.0
        self.sync()

    def sync(self) -> None:
        self.epoch_offset = time.time() - time.perf_counter()


class Figures:
    """Every figure of one process: published per queue, waits, consumers' figures."""

    def __init__(self) -> None:
        self.published: dict[str, int] = {}
        self.waits: dict[str, Histogram] = {}
        self.consumers: dict[str, ConsumerFigures] = {}
        self.clock = Clock()

    def queue(self, queue_id: str) -> None:
        """Make the queue's series exist (at 0) before its first message."""
        self.published.setdefault(queue_id, 0)
        if queue_id not in self.waits:
            self.waits[queue_id] = Histogram()

    def consumer(self, consumer_id: str, queue_id: str) -> ConsumerFigures:
        found = self.consumers.get(consumer_id)
        if found is None:
            self.queue(queue_id)
            found = ConsumerFigures(consumer_id, queue_id, self.waits[queue_id], self.clock)
            self.consumers[consumer_id] = found
        return found

    def snapshot(self, in_flight: dict[str, int] | None = None) -> Snapshot:
        """Plain data; `in_flight` gives each consumer's deliveries in a handler now."""
        for consumer in self.consumers.values():
            consumer.flush()  # before the sync: starts were read with the old offset
        self.clock.sync()
        in_flight = in_flight or {}
        return {
            "published": dict(self.published),
            "wait": {q: h.as_list() for q, h in self.waits.items()},
            "consumers": {
                c.consumer_id: {
                    "queue": c.queue_id,
                    "outcomes": [c.acked(), *c.outcomes[1:]],
                    "processing": c.processing.as_list(),
                    "in_flight": in_flight.get(c.consumer_id, 0),
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
