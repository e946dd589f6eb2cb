"""The same application on every driver: YAML -> App -> publish -> handler -> ack, nack,
dead letter, and a consumer stopped mid-stream that loses nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import relevo
from tests.amqp_cleanup import delete_queues_of_apps
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.drivers.postgres_support import POSTGRES_DSN, drop_schema, unique_schema
from tests.integration import handlers
from tests.waiting import queue_holds, wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
DRIVERS = {
    "memory": ("", None),
    "amqp": ("url: amqp://guest:guest@127.0.0.1:5672/\n  reconnect_delay: 100ms",
             ("rabbitmq", 5672)),
    "redis": (f"url: {REDIS_URL}\n  claim_idle: 2s\n  block: 200ms", ("redis", 6379)),
    "postgres": (f"dsn: {POSTGRES_DSN}\n  claim_idle: 2s", ("postgres", 5432)),
}
# AMQP queues expire once unused, so a failed run leaves nothing behind on the broker
QUEUE_OPTIONS = "driver_options: {amqp: {queue_expiry: 30s}}"


@pytest.fixture(params=sorted(DRIVERS))
async def driver_yaml(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The YAML of a driver entry named `broker`; afterwards, what the test's apps (written
    under tmp_path) left on that broker is deleted."""
    kind = request.param
    settings, service = DRIVERS[kind]
    if service is not None:
        require_service(service[0], "127.0.0.1", service[1])
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    schema = unique_schema()
    if kind == "redis":
        settings += f"\n  key_prefix: '{prefix}'"
    if kind == "postgres":
        settings += f"\n  schema: {schema}"
    yield f"- name: broker\n  kind: queue.driver.{kind}\n  {settings}\n"
    if kind == "amqp":
        await delete_queues_of_apps(tmp_path)  # expiry would take the queues, not ladders
    if kind == "postgres":
        await drop_schema(schema)
    if kind == "redis":
        async with Redis.from_url(REDIS_URL) as client:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


def app_on(
    tmp_path: Path, driver_yaml: str, handler: str, consumer: str = "", queue: str = ""
) -> Path:
    suffix = uuid.uuid4().hex[:10]
    return write_app(tmp_path, driver_yaml + f"""\
- name: tasks
  kind: queue.queue
  driver: broker
  queue_name: tasks-{suffix}
  dead_letter: {{queue: dead, max_attempts: 2}}
{queue}  {QUEUE_OPTIONS}
- name: dead
  kind: queue.queue
  driver: broker
  queue_name: dead-{suffix}
  {QUEUE_OPTIONS}
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:{handler}"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
{consumer}""")


pytestmark = pytest.mark.broker


async def test_messages_are_handled_and_acked_with_ids_and_typed_headers(
    tmp_path: Path, driver_yaml: str
) -> None:
    headers = {"correlation_id": "c-1", "n": 3, "ratio": 0.5, "urgent": True, "who": "ñ"}
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        ids = [await app.publish("app:tasks", {"n": n}, headers=headers) for n in range(5)]
        await wait_until(lambda: len(handlers.state.calls) == 5, 10, "5 handled")
        await queue_holds(app, "app:tasks", 0)
    assert sorted(c.id for c in handlers.state.calls) == sorted(ids)
    for call in handlers.state.calls:
        assert call.attempts == 1
        assert {k: call.headers[k] for k in headers} == headers
        assert {k: type(call.headers[k]) for k in headers} == {k: type(v) for k, v in
                                                              headers.items()}


async def test_a_failing_message_is_retried_then_dead_lettered(
    tmp_path: Path, driver_yaml: str
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        message_id = await app.publish("app:tasks", {"id": 1, "fail": True})
        await wait_until(lambda: len(handlers.state.calls) == 2, 10, "two attempts")
        await queue_holds(app, "app:dead", 1)
        await queue_holds(app, "app:tasks", 0)
    assert [(c.id, c.attempts) for c in handlers.state.calls] == [(message_id, 1),
                                                                   (message_id, 2)]


def require_delays(app: relevo.App) -> None:
    if not app.queues["app:tasks"].driver.capabilities.delays:
        pytest.skip("this driver cannot hold delayed messages")


async def test_a_failing_message_waits_its_backoff_before_the_retry(
    tmp_path: Path, driver_yaml: str
) -> None:
    retry = "  retry: {initial_delay: 300ms, jitter: 0}\n"
    async with relevo.load(app_on(tmp_path, driver_yaml, "record", queue=retry)) as app:
        require_delays(app)
        await app.publish("app:tasks", {"id": 1, "fail": True})
        await wait_until(lambda: len(handlers.state.calls) == 2, 10, "two attempts")
        await queue_holds(app, "app:dead", 1)
    first, second = handlers.state.calls
    assert second.at - first.at >= 0.3


async def test_a_delayed_publish_is_handled_no_sooner_than_asked(
    tmp_path: Path, driver_yaml: str
) -> None:
    async with relevo.load(app_on(tmp_path, driver_yaml, "record")) as app:
        require_delays(app)
        published = time.time()
        await app.publish("app:tasks", {"id": 1}, delay="400ms")
        assert (await app.info("app:tasks"))["delayed"] == 1
        await wait_until(lambda: len(handlers.state.calls) == 1, 10, "handled")
        await queue_holds(app, "app:tasks", 0)
    assert handlers.state.calls[0].at - published >= 0.4


async def test_stopping_a_consumer_mid_stream_loses_nothing(
    tmp_path: Path, driver_yaml: str
) -> None:
    path = app_on(tmp_path, driver_yaml, "gated", consumer="  concurrency: 2\n  prefetch: 6\n")
    async with relevo.load(path) as app:
        ids = await app.publish_batch("app:tasks", [{"n": n} for n in range(20)])
        await wait_until(lambda: handlers.state.running == 2, 10, "two busy workers")
        handlers.state.gate.set()  # running handlers may finish while the consumer stops
        await app.stop("app:worker")
        seen_before = {c.id for c in handlers.state.calls}
        await queue_holds(app, "app:tasks", 20 - len(seen_before))
        await app.start("app:worker")
        await wait_until(lambda: {c.id for c in handlers.state.calls} == set(ids), 15,
                         "every message handled")
        await queue_holds(app, "app:tasks", 0)
