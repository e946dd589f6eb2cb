"""Rates from the application's `metrics.prometheus` endpoint: published and processed.

Counts alone give only the net change of a queue. The workers' endpoint counts what was
published (`relevo_messages_published_total`) and handled
(`relevo_messages_processed_total`, every outcome) per queue, so scraping it every
`sample_s` seconds gives both sides. When the endpoint does not answer (the workers are
down, or run without the entry) the rates fall back to the count deltas.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass

from relevo.dashboard.background import BackgroundLoop
from relevo.dashboard.history import RATE_WINDOW_S, Rates, RateSource

log = logging.getLogger("relevo.dashboard")

PUBLISHED = "relevo_messages_published_total"
PROCESSED = "relevo_messages_processed_total"
SCRAPE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Scrape:
    at: float
    published: dict[str, float]  # queue ID -> counter
    processed: dict[str, float]  # queue ID -> counter, summed over consumers and outcomes


def parse(text: str, at: float) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, dict[str, float]] = {PUBLISHED: defaultdict(float),
                                          PROCESSED: defaultdict(float)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums and "queue" in sample.labels:
                sums[sample.name][sample.labels["queue"]] += sample.value
    return Scrape(at, dict(sums[PUBLISHED]), dict(sums[PROCESSED]))


class MetricsRates(BackgroundLoop):
    """A RateSource scraping `url`; `fallback` answers while the endpoint cannot."""

    task_name = "relevo-dashboard-metrics"

    def __init__(self, url: str, fallback: RateSource, sample_s: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.fallback = fallback
        self.sample_s = sample_s
        self.scrapes: deque[Scrape] = deque(maxlen=int(RATE_WINDOW_S / sample_s) + 2)

    async def _run(self) -> None:
        while True:
            try:
                text = await asyncio.to_thread(self._fetch)
                self.scrapes.append(parse(text, time.time()))
            except Exception as exc:  # the workers may be down: fall back, try again
                log.debug("dashboard could not scrape %s: %s", self.url, exc)
            await asyncio.sleep(self.sample_s)

    def _fetch(self) -> str:
        with urllib.request.urlopen(self.url, timeout=SCRAPE_TIMEOUT_S) as answer:
            text: str = answer.read().decode()
            return text

    def rates(self, queue_id: str) -> Rates | None:
        base = self.fallback.rates(queue_id)
        scrapes = self.scrapes
        if len(scrapes) < 2 or scrapes[-1].at < time.time() - 3 * self.sample_s:
            return base
        last, first = scrapes[-1], scrapes[0]
        span = last.at - first.at
        if span <= 0:
            return base

        def per_s(field: str) -> float:
            now: dict[str, float] = getattr(last, field)
            then: dict[str, float] = getattr(first, field)
            # a counter that went down was reset (the workers restarted): count from zero
            delta = now.get(queue_id, 0.0) - then.get(queue_id, 0.0)
            return (delta if delta >= 0 else now.get(queue_id, 0.0)) / span

        return Rates(
            net_per_s=base.net_per_s if base else None,
            published_per_s=per_s("published"),
            processed_per_s=per_s("processed"),
            source="metrics",
        )
