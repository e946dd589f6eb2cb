"""The metrics.prometheus entry: the contract's series, exact counters, a registry per app."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import relevo
from relevo.errors import ConfigError
from relevo.metrics.endpoint import PrometheusEndpoint
from tests.amqp_cleanup import delete_queues
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.drivers.test_amqp import close_connection_broker_side
from tests.integration import handlers
from tests.integration.test_every_driver import QUEUE_OPTIONS, driver_yaml  # noqa: F401
from tests.waiting import queue_holds, wait_until, wait_until_async


def handle(body: str) -> Any:
    delivery = relevo.message()
    if body == "fail":
        raise RuntimeError("boom")
    if body == "later" and delivery.attempts == 1:
        delivery.nack("not yet", delay=0.01)
    if body == "reject":
        delivery.reject("unwanted")
    return None


def app_source(namespace: str, *, consumers: bool = True) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"name": "mem", "kind": "queue.driver.memory", "lifecycle": {"auto_start": True}},
        {"name": "work", "kind": "queue.queue", "driver": "mem",
         "dead_letter": {"queue": "dead", "max_attempts": 2}},
        {"name": "dead", "kind": "queue.queue", "driver": "mem"},
        {"name": "metrics", "kind": "metrics.prometheus", "listen": "127.0.0.1:0",
         "lifecycle": {"auto_start": True}},
    ]
    if consumers:
        entries += [
            {"name": "fn", "kind": "function.python", "handler": handle},
            {"name": "worker", "kind": "queue.consumer", "queue": "work", "func": "fn",
             "concurrency": 4, "lifecycle": {"auto_start": True}},
        ]
    return {"version": "1.0", "namespace": namespace, "entries": entries}


def endpoint(app: relevo.App, entry_id: str) -> PrometheusEndpoint:
    assert app._supervisor is not None
    service = app._supervisor.services[entry_id].service
    assert isinstance(service, PrometheusEndpoint)
    return service


async def scrape(app: relevo.App, entry_id: str) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                         float]:
    """Every sample of the endpoint, by (name, sorted labels)."""
    url = f"http://127.0.0.1:{endpoint(app, entry_id).port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Iterable[tuple[str, Any]]) -> set[str]:
    return {name for name, _ in samples}


async def test_counters_equal_the_messages_published_and_settled_per_outcome() -> None:
    bodies = ["ok"] * 3 + ["fail"] * 2 + ["later"] * 2 + ["reject"]
    async with relevo.load(app_source("m1")) as app:
        for body in bodies:
            await app.publish("m1:work", body)

        async def settled() -> bool:  # join does not wait for retries not yet due
            await app.join("m1:work")
            return (await app.info("m1:work"))["delayed"] == 0

        await wait_until_async(settled, 10, "every retry handled")
        await app.join("m1:work")
        samples = await scrape(app, "m1:metrics")
    processed = "relevo_messages_processed_total"
    work = {"queue": "m1:work", "consumer": "m1:worker"}
    assert value(samples, "relevo_messages_published_total", queue="m1:work") == 8
    # dead-letter copies are the runtime's, not the application's
    assert value(samples, "relevo_messages_published_total", queue="m1:dead") == 0
    assert value(samples, processed, **work, outcome="ack") == 5
    assert value(samples, processed, **work, outcome="nack") == 2
    assert value(samples, processed, **work, outcome="retry") == 2
    assert value(samples, processed, **work, outcome="dead_letter") == 3
    assert value(samples, "relevo_message_processing_seconds_count", **work) == 12
    assert value(samples, "relevo_message_wait_seconds_count", queue="m1:work") == 8
    assert value(samples, "relevo_messages_in_flight", **work) == 0
    assert value(samples, "relevo_queue_messages", queue="m1:dead", state="ready") == 3
    for state in ("ready", "in_flight", "delayed"):
        assert value(samples, "relevo_queue_messages", queue="m1:work", state=state) == 0
    assert value(samples, "relevo_entry_up", entry="m1:worker") == 1
    assert value(samples, "relevo_driver_reconnects_total", driver="m1:mem") == 0


def ack_itself(body: str) -> Any:
    if body == "self":
        relevo.message().ack()  # settled by the handler: the pool's ack afterwards is void
    return None


async def test_an_ack_counts_once_whether_the_handler_or_the_pool_makes_it() -> None:
    """The pool settles its own acks past the middleware chain and counts them itself;
    an ack the handler makes goes through the chain: each must count once, never twice."""
    source = app_source("m9", consumers=False)
    source["entries"] += [
        {"name": "fn", "kind": "function.python", "handler": ack_itself},
        {"name": "worker", "kind": "queue.consumer", "queue": "work", "func": "fn",
         "concurrency": 2, "lifecycle": {"auto_start": True}},
    ]
    async with relevo.load(source) as app:
        for body in ["self"] * 3 + ["plain"] * 4:
            await app.publish("m9:work", body)
        await app.join("m9:work")
        samples = await scrape(app, "m9:metrics")
    work = {"queue": "m9:work", "consumer": "m9:worker"}
    assert value(samples, "relevo_messages_processed_total", **work, outcome="ack") == 7
    assert value(samples, "relevo_message_processing_seconds_count", **work) == 7
    assert value(samples, "relevo_message_wait_seconds_count", queue="m9:work") == 7


async def test_every_series_of_the_contract_is_there_before_any_message() -> None:
    async with relevo.load(app_source("m2")) as app:
        samples = await scrape(app, "m2:metrics")
        await app.stop("m2:worker")
        after_stop = await scrape(app, "m2:metrics")
    assert names(samples) >= {
        "relevo_messages_published_total", "relevo_messages_processed_total",
        "relevo_message_processing_seconds_bucket", "relevo_message_processing_seconds_sum",
        "relevo_message_processing_seconds_count", "relevo_message_wait_seconds_bucket",
        "relevo_messages_in_flight", "relevo_queue_messages",
        "relevo_driver_reconnects_total", "relevo_entry_up",
    }
    assert value(samples, "relevo_queue_messages", queue="m2:work", state="delayed") == 0
    assert value(samples, "relevo_messages_processed_total", queue="m2:work",
                 consumer="m2:worker", outcome="retry") == 0
    assert value(samples, "relevo_entry_up", entry="m2:worker") == 1
    assert value(after_stop, "relevo_entry_up", entry="m2:worker") == 0


async def test_queue_counts_are_read_at_scrape_time() -> None:
    async with relevo.load(app_source("m3", consumers=False)) as app:
        await app.publish_batch("m3:work", ["ok"] * 5)
        samples = await scrape(app, "m3:metrics")
    assert value(samples, "relevo_queue_messages", queue="m3:work", state="ready") == 5
    assert value(samples, "relevo_messages_published_total", queue="m3:work") == 5


async def test_two_apps_in_one_process_keep_their_own_figures() -> None:
    async with relevo.load(app_source("m4")) as one, relevo.load(app_source("m5")) as two:
        await one.publish("m4:work", "ok")
        await one.join("m4:work")
        first, second = await scrape(one, "m4:metrics"), await scrape(two, "m5:metrics")
    assert value(first, "relevo_messages_published_total", queue="m4:work") == 1
    assert ("relevo_messages_published_total", (("queue", "m4:work"),)) not in second


def test_an_app_without_a_metrics_entry_never_imports_prometheus_client() -> None:
    code = (
        "import asyncio, sys, relevo\n"
        "src = {'version': '1.0', 'namespace': 'n', 'entries': ["
        "{'name': 'mem', 'kind': 'queue.driver.memory'},"
        "{'name': 'q', 'kind': 'queue.queue', 'driver': 'mem'}]}\n"
        "async def main():\n"
        "    async with relevo.load(src) as app:\n"
        "        await app.publish('n:q', 1)\n"
        "asyncio.run(main())\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_listen_that_is_not_host_port_is_a_config_error_naming_entry_and_field() -> None:
    source = app_source("m6", consumers=False)
    source["entries"][3]["listen"] = "9464"
    with pytest.raises(ConfigError) as caught:
        relevo.load(source)
    text = str(caught.value)
    assert "m6:metrics" in text
    assert "listen" in text
    assert "host:port" in text


@pytest.mark.broker
async def test_a_connection_the_broker_closed_counts_one_driver_reconnect() -> None:
    require_service("rabbitmq", "127.0.0.1", 5672)
    name = f"relevo-test-metrics-{uuid.uuid4().hex[:8]}"
    source = app_source("m7", consumers=False)
    source["entries"][0] = {
        "name": "mem", "kind": "queue.driver.amqp", "url": "amqp://guest:guest@127.0.0.1:5672/",
        "connection_name": name, "reconnect_delay": "100ms", "lifecycle": {"auto_start": True},
    }
    for queue in source["entries"][1:3]:
        queue["queue_name"] = f"{name}-{queue['name']}"
        queue["driver_options"] = {"amqp": {"queue_expiry": "30s"}}
    try:
        async with relevo.load(source) as app:
            await app.publish("m7:work", "ok")
            await close_connection_broker_side(name)
            await app.publish("m7:work", "ok")  # waits for the reconnect
            samples = await scrape(app, "m7:metrics")
    finally:
        await delete_queues(q["queue_name"] for q in source["entries"][1:3])
    assert value(samples, "relevo_driver_reconnects_total", driver="m7:mem") == 1
    assert value(samples, "relevo_messages_published_total", queue="m7:work") == 2


RELOADABLE = """\
- name: mem
  kind: queue.driver.memory
  lifecycle: {auto_start: true}
- name: work
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: worker
  kind: queue.consumer
  queue: work
  func: fn
  concurrency: CONCURRENCY
  lifecycle: {auto_start: true}
- name: metrics
  kind: metrics.prometheus
  listen: 127.0.0.1:0
  lifecycle: {auto_start: true}
"""


async def test_a_reload_keeps_counting_in_the_same_figures_on_the_same_endpoint(
    tmp_path: Path,
) -> None:
    path = write_app(tmp_path, RELOADABLE.replace("CONCURRENCY", "1"))
    async with relevo.load(path) as app:
        await app.publish("app:work", {"n": 1})
        await app.join("app:work")
        write_app(tmp_path, RELOADABLE.replace("CONCURRENCY", "2"))
        assert "app:worker" in (await app.reload())["restarted"]
        await app.publish_batch("app:work", [{"n": 2}, {"n": 3}])
        await app.join("app:work")
        samples = await scrape(app, "app:metrics")
    labels = {"queue": "app:work", "consumer": "app:worker"}
    assert value(samples, "relevo_messages_published_total", queue="app:work") == 3
    assert value(samples, "relevo_messages_processed_total", **labels, outcome="ack") == 3
    assert value(samples, "relevo_entry_up", entry="app:worker") == 1


EVERY_DRIVER_APP = """\
- name: work
  kind: queue.queue
  driver: broker
  queue_name: work-{suffix}
  dead_letter: {{queue: dead, max_attempts: 2}}
  {options}
- name: dead
  kind: queue.queue
  driver: broker
  queue_name: dead-{suffix}
  {options}
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: worker
  kind: queue.consumer
  queue: work
  func: fn
  concurrency: 4
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
- name: metrics
  kind: metrics.prometheus
  listen: 127.0.0.1:0
  lifecycle: {{auto_start: true}}
"""


async def test_on_every_driver_the_counters_add_up_and_every_first_delivery_has_a_wait(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    suffix = uuid.uuid4().hex[:10]
    path = write_app(tmp_path, driver_yaml + EVERY_DRIVER_APP.format(
        suffix=suffix, options=QUEUE_OPTIONS))
    bodies = [{"id": n} for n in range(6)] + [{"id": 6, "fail": True}]
    async with relevo.load(path) as app:
        await app.publish_batch("app:work", bodies[:3])
        for body in bodies[3:]:
            await app.publish("app:work", body)
        await wait_until(lambda: len(handlers.state.calls) == 8, 20, "8 handler calls")
        await queue_holds(app, "app:dead", 1)
        await app.join("app:work")
        samples = await scrape(app, "app:metrics")
    labels = {"queue": "app:work", "consumer": "app:worker"}
    processed = "relevo_messages_processed_total"
    assert value(samples, "relevo_messages_published_total", queue="app:work") == 7
    assert value(samples, processed, **labels, outcome="ack") == 6
    assert value(samples, processed, **labels, outcome="nack") == 1
    assert value(samples, processed, **labels, outcome="dead_letter") == 1
    assert value(samples, "relevo_message_processing_seconds_count", **labels) == 8
    # x_due travelled with each message through the broker
    assert value(samples, "relevo_message_wait_seconds_count", queue="app:work") == 7
    assert value(samples, "relevo_message_wait_seconds_bucket", queue="app:work", le="60.0") == 7
