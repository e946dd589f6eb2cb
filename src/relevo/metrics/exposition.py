"""Prometheus families of the contract, built from a figures snapshot at scrape time.

Names, types and labels here are a public contract: dashboards and alerts use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from relevo.metrics.figures import BUCKETS, OUTCOMES, QUEUE_STATES, Snapshot

_LE = [repr(b) if b < 1 else f"{b:.1f}" for b in BUCKETS] + ["+Inf"]


def _buckets(histogram: list[float]) -> tuple[list[tuple[str, float]], float]:
    counts, total = histogram[:-1], histogram[-1]
    cumulative, running = [], 0.0
    for le, count in zip(_LE, counts, strict=True):
        running += count
        cumulative.append((le, running))
    return cumulative, total


def families(snap: Snapshot) -> Iterator[Metric]:
    """Every family of the contract, each series present (at 0 when nothing happened)."""
    published = CounterMetricFamily(
        "relevo_messages_published", "Messages the application published, per queue.",
        labels=["queue"],
    )
    for queue, count in sorted(snap.get("published", {}).items()):
        published.add_metric([queue], count)
    yield published

    consumers = sorted(snap.get("consumers", {}).items())
    processed = CounterMetricFamily(
        "relevo_messages_processed",
        "Deliveries settled, per outcome: ack, nack (redelivered at once), retry (after a "
        "delay), dead_letter (moved to the dead-letter queue, or rejected).",
        labels=["queue", "consumer", "outcome"],
    )
    processing = HistogramMetricFamily(
        "relevo_message_processing_seconds", "Handler time per delivery.",
        labels=["queue", "consumer"],
    )
    in_flight = GaugeMetricFamily(
        "relevo_messages_in_flight", "Deliveries in a handler now.", labels=["queue", "consumer"]
    )
    for consumer, c in consumers:
        for outcome, count in zip(OUTCOMES, c["outcomes"], strict=True):
            processed.add_metric([c["queue"], consumer, outcome], count)
        buckets, total = _buckets(c["processing"])
        processing.add_metric([c["queue"], consumer], buckets, total)
        in_flight.add_metric([c["queue"], consumer], c["in_flight"])
    yield processed
    yield processing

    wait = HistogramMetricFamily(
        "relevo_message_wait_seconds",
        "From a message's due time (publish, or end of its delay) to its handler's start.",
        labels=["queue"],
    )
    for queue, histogram in sorted(snap.get("wait", {}).items()):
        buckets, total = _buckets(histogram)
        wait.add_metric([queue], buckets, total)
    yield wait
    yield in_flight

    queues = GaugeMetricFamily(
        "relevo_queue_messages", "Messages in each queue, read from its driver at scrape time.",
        labels=["queue", "state"],
    )
    for queue, states in sorted(snap.get("queues", {}).items()):
        for state in QUEUE_STATES:
            queues.add_metric([queue, state], states.get(state, 0))
    yield queues

    reconnects = CounterMetricFamily(
        "relevo_driver_reconnects", "Connections a driver re-established after losing them.",
        labels=["driver"],
    )
    for driver, count in sorted(snap.get("reconnects", {}).items()):
        reconnects.add_metric([driver], count)
    yield reconnects

    up = GaugeMetricFamily("relevo_entry_up", "1 while the entry runs, else 0.", labels=["entry"])
    for entry, value in sorted(snap.get("up", {}).items()):
        up.add_metric([entry], value)
    yield up


class SnapshotCollector(Collector):
    """A prometheus-client collector over whatever `read()` returns at collect time."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        return families(self.read())


def registry_for(read: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry of this application's own (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(read))
    return registry
