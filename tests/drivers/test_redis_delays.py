"""Delayed messages on Redis: what the shared contract cannot show with one driver."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from relevo.drivers.base import QueueSpec
from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.mover import Mover
from tests.conftest import require_service
from tests.crashes import PrivateRedis
from tests.drivers.conformance import Collector, envelope
from tests.drivers.test_redis import REDIS_URL, delete_keys, private_redis, settings  # noqa: F401
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.broker

MakeDriver = Callable[[], Awaitable[RedisDriver]]


@pytest.fixture
async def make_driver() -> AsyncIterator[MakeDriver]:
    """Started drivers sharing one key prefix, as processes share one Redis."""
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:12]}:"
    made: list[RedisDriver] = []

    async def make() -> RedisDriver:
        driver = RedisDriver(settings(key_prefix=prefix))
        await driver.start()
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.stop()
    await delete_keys(prefix)


async def test_movers_of_several_processes_promote_each_delayed_message_once(
    make_driver: MakeDriver,
) -> None:
    drivers = [await make_driver() for _ in range(3)]
    for driver in drivers:
        await driver.declare(QueueSpec("jobs", {}))
    sinks = [Collector(auto="ack") for _ in drivers]
    subs = [await d.attach("jobs", sink, 20, {}) for d, sink in zip(drivers, sinks, strict=True)]
    sent = [envelope(i) for i in range(300)]
    due = time.time() + 0.3
    for n, driver in enumerate(drivers):  # each process delays a third
        await driver.publish("jobs", sent[n::3], due + n * 0.05)
    await wait_until(lambda: sum(len(s.deliveries) for s in sinks) >= 300, 10, "300")

    async def drained() -> bool:  # the last acks reach Redis after their settle returns
        stats = await drivers[0].info("jobs")
        return (stats.message_count, stats.delayed) == (0, 0)

    await wait_until_async(drained, what="the stream and the delayed set to empty")
    got = sorted(i for s in sinks for i in s.ids)
    assert got == sorted(e.id for e in sent)  # each exactly once
    assert min(t for s in sinks for t in s.arrived) >= due - 0.002
    for sub in subs:
        await sub.close()


async def test_a_due_message_whose_queue_is_gone_is_logged_and_kept(
    make_driver: MakeDriver, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting a queue must not drop the delayed messages waiting for it."""
    caplog.set_level(logging.WARNING, logger="relevo.drivers.redis")
    driver = await make_driver()
    await driver.declare(QueueSpec("gone", {}))
    sent = envelope(1)
    await driver.publish("gone", [sent], time.time() + 0.2)
    async with Redis.from_url(REDIS_URL) as client:
        await client.delete(driver.stream("gone"))
        await wait_until(lambda: any("no longer exists" in r.getMessage()
                                     for r in caplog.records), 5, "the warning")
        assert await client.zcard(driver.delayed("gone")) == 1
    await driver.declare(QueueSpec("gone", {}))
    sink = Collector(auto="ack")
    sub = await driver.attach("gone", sink, 5, {})
    await sink.wait_for(1)
    assert sink.ids == [sent.id]
    await sub.close()


async def test_a_delayed_nack_keeps_the_body_byte_for_byte_and_the_headers_typed(
    make_driver: MakeDriver,
) -> None:
    driver = await make_driver()
    await driver.declare(QueueSpec("bytes", {}))
    body = bytes(range(256)) * 4
    sent = envelope(1, body, count=3, f=0.5, flag=True, text="é")
    await driver.publish("bytes", [sent], time.time() + 0.1)
    sink = Collector()
    sub = await driver.attach("bytes", sink, 5, {})
    await sink.wait_for(1)
    assert sink.deliveries[0].nack("again", delay=0.1)
    await sink.wait_for(2)
    again = sink.deliveries[1]
    assert (again.body, again.attempts) == (body, 2)
    assert again.headers == {"count": 3, "f": 0.5, "flag": True, "text": "é"}
    again.ack()
    await sub.close()


@pytest.mark.slow
async def test_the_mover_starts_again_after_redis_crashes_and_loses_no_delayed_message(
    private_redis: PrivateRedis,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Delayed messages survive a Redis crash (AOF), and the mover picks up again with the
    reconnect backoff instead of dying with its connection."""
    caplog.set_level(logging.WARNING, logger="relevo.drivers.redis")
    driver = RedisDriver(settings(url=private_redis.url, publish_timeout=10.0))
    await driver.start()
    try:
        await driver.declare(QueueSpec("jobs", {}))
        sent = [envelope(i) for i in range(20)]
        due = time.time() + 1.0
        await driver.publish("jobs", sent, due)
        private_redis.kill()
        await wait_until(lambda: any("mover of delayed messages failed" in r.getMessage()
                                     for r in caplog.records), 5, "the mover's warning")
        await asyncio.to_thread(private_redis.start)
        sink = Collector(auto="ack")
        sub = await driver.attach("jobs", sink, 50, {})
        await sink.wait_for(20, timeout_s=15)
        assert sorted(sink.ids) == sorted(e.id for e in sent)
        assert min(sink.arrived) >= due - 0.002
        await sub.close()
    finally:
        await driver.stop()


async def test_a_mover_whose_cancellation_is_swallowed_still_stops_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: a client library may turn a cancellation into a connection error. The
    mover took it for an outage and went on, so close() waited out its bound for nothing
    and left the task running (each child stopping on SIGTERM took 2 s longer)."""
    require_service("redis", "127.0.0.1", 6379)
    promoting = asyncio.Event()
    swallowed: list[bool] = []

    async def swallowing_promote(queue: str) -> float | None:
        promoting.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:  # the first only: a mover that goes on can still be stopped
                raise
            swallowed.append(True)
            raise RedisConnectionError("connection closed while reading") from None
        return None

    async with Redis.from_url(REDIS_URL) as client:
        mover = Mover(client, settings(), lambda queue: (f"{queue}:s", f"{queue}:d"))
        mover.promote = swallowing_promote  # type: ignore[method-assign]
        mover.watch("jobs")
        task = mover._task
        assert task is not None
        await promoting.wait()
        await mover.close()
    assert swallowed
    stopped = task.done()
    task.cancel()
    assert stopped, "the mover still ran after close()"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
