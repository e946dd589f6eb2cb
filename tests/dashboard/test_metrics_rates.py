"""Rates from the workers' metrics endpoint, and the fallback to count deltas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import relevo
from relevo.dashboard import create_app
from relevo.dashboard.history import Rates
from relevo.dashboard.metrics_rates import MetricsRates, Scrape, parse
from tests.appfiles import write_app

TEXT = """\
# TYPE relevo_messages_published_total counter
relevo_messages_published_total{{queue="shop:orders"}} {published}
# TYPE relevo_messages_processed_total counter
relevo_messages_processed_total{{queue="shop:orders",consumer="shop:w",outcome="ack"}} {acked}
relevo_messages_processed_total{{queue="shop:orders",consumer="shop:w",outcome="nack"}} 2.0
relevo_messages_processed_total{{queue="shop:other",consumer="shop:v",outcome="ack"}} 7.0
"""


class Fixed:
    def __init__(self, rates: Rates | None) -> None:
        self.value = rates

    def rates(self, queue_id: str) -> Rates | None:
        return self.value


def test_a_scrape_sums_the_processed_outcomes_of_each_queue() -> None:
    scrape = parse(TEXT.format(published=10.0, acked=5.0), at=1.0)
    assert scrape.published == {"shop:orders": 10.0}
    assert scrape.processed == {"shop:orders": 7.0, "shop:other": 7.0}


def test_rates_are_the_counters_change_per_second_with_the_net_rate_kept() -> None:
    source = MetricsRates("http://unused/metrics", Fixed(Rates(net_per_s=1.5)), sample_s=5)
    now = time.time()
    source.scrapes.extend([
        Scrape(now - 10, {"shop:orders": 100.0}, {"shop:orders": 40.0}),
        Scrape(now, {"shop:orders": 150.0}, {"shop:orders": 70.0}),
    ])
    assert source.rates("shop:orders") == Rates(1.5, 5.0, 3.0, "metrics")
    source.scrapes.append(Scrape(now + 0.1, {"shop:orders": 3.0}, {}))  # workers restarted
    restarted = source.rates("shop:orders")
    assert restarted is not None
    assert restarted.published_per_s == pytest.approx(3.0 / 10.1)


def test_without_fresh_scrapes_the_count_deltas_answer() -> None:
    fallback = Rates(net_per_s=-2.0)
    source = MetricsRates("http://unused/metrics", Fixed(fallback), sample_s=5)
    assert source.rates("shop:orders") is fallback
    old = time.time() - 3600
    source.scrapes.extend([Scrape(old, {}, {}), Scrape(old + 5, {}, {})])
    assert source.rates("shop:orders") is fallback


@pytest.fixture
def endpoint() -> Iterator[str]:
    scrapes = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scrapes[0] += 1
            body = TEXT.format(published=10.0 * scrapes[0], acked=8.0 * scrapes[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_with_a_metrics_entry_the_overview_shows_in_and_out_rates(
    tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELEVO_DASHBOARD_TOKEN", raising=False)
    path = write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: orders
  kind: queue.queue
  driver: mem
- name: metrics
  kind: metrics.prometheus
  listen: "{endpoint}"
""", namespace="shop")
    with TestClient(create_app(relevo.load(path), sample_s=0.05)) as client:
        deadline = time.monotonic() + 10  # a deadline on a condition, not a fixed sleep
        while " · out " not in (page := client.get("/").text):
            assert time.monotonic() < deadline, "the metrics rates never showed"
            time.sleep(0.05)
    assert "published / handled per second" in page
