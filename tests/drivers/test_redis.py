"""The Redis Streams driver against the shared contract, plus what only Redis promises:
crash recovery, leases, attempts across nacks, restarts, and a stream that stays small."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from relevo.drivers.base import QueueSpec
from relevo.drivers.credit import Credit
from relevo.drivers.redis.connection import Outage, TlsConnection, create_client
from relevo.drivers.redis.driver import GROUP, RedisDriver
from relevo.drivers.redis.keeper import LeaseKeeper
from relevo.drivers.redis.member import Member
from relevo.drivers.redis.settings import RedisQueueOptions, RedisSettings
from relevo.drivers.redis.settlements import Settlements
from relevo.errors import DriverUnavailable, PublishError, QueueFull
from relevo.message import Envelope
from tests.conftest import require_service
from tests.crashes import PrivateRedis
from tests.drivers.conformance import Collector, DriverConformance, envelope
from tests.waiting import wait_until_async

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"

MakeDriver = Callable[..., Awaitable[RedisDriver]]


def settings(**overrides: Any) -> RedisSettings:
    """Fast timings, and a key prefix no other test or user of this Redis shares."""
    values: dict[str, Any] = {
        "url": REDIS_URL,
        "key_prefix": f"relevo-test:{uuid.uuid4().hex[:12]}:",
        "claim_idle": 1.0,
        "block": 0.2,
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.5,
    }
    values.update(overrides)
    return RedisSettings.model_validate(values)


async def delete_keys(prefix: str) -> None:
    async with Redis.from_url(REDIS_URL) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)


@pytest.fixture
async def driver() -> AsyncIterator[RedisDriver]:
    require_service("redis", "127.0.0.1", 6379)
    driver = RedisDriver(settings())
    await driver.start()
    yield driver
    await driver.stop()
    await delete_keys(driver.settings.key_prefix)


class TestRedisConformance(DriverConformance):
    @pytest.fixture
    def crash_settings(self) -> dict[str, Any]:
        return {"claim_idle": 0.5}

    @pytest.fixture
    def unreachable_settings(self) -> dict[str, Any]:
        return {"url": "redis://127.0.0.1:1/0", "publish_timeout": 1.0}


@pytest.fixture
async def make_driver() -> AsyncIterator[MakeDriver]:
    """Started drivers sharing one key prefix (like processes sharing one Redis)."""
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:12]}:"
    made: list[RedisDriver] = []

    async def make(**overrides: Any) -> RedisDriver:
        made.append(RedisDriver(settings(key_prefix=prefix, **overrides)))
        await made[-1].start()
        return made[-1]

    yield make
    for item in made:
        await item.stop()
    await delete_keys(prefix)


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    async with Redis.from_url(REDIS_URL) as client:
        yield client


async def declared(driver: RedisDriver, **options: Any) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(name, options))
    return name


async def wait_empty(driver: RedisDriver, queue: str, timeout_s: float = 10.0) -> None:
    async def empty() -> bool:
        return (await driver.info(queue)).message_count == 0

    deadline = time.monotonic() + timeout_s
    while not await empty():
        assert time.monotonic() < deadline, f"{queue} never emptied: {await driver.info(queue)}"
        await asyncio.sleep(0.02)


# -- crash recovery and leases ------------------------------------------------------------


async def test_a_handler_slower_than_claim_idle_is_not_delivered_twice(
    make_driver: MakeDriver,
) -> None:
    busy, idle = await make_driver(claim_idle=0.3), await make_driver(claim_idle=0.3)
    queue = await declared(busy)
    await busy.publish(queue, [envelope(1)])
    slow = Collector()
    sub_slow = await busy.attach(queue, slow, 1, {})
    await slow.wait_for(1)
    watcher = Collector(auto="ack")
    sub_watch = await idle.attach(queue, watcher, 10, {})
    # The handler runs for 5x claim_idle while another consumer's reclaim loop watches.
    await asyncio.sleep(1.5)
    assert watcher.deliveries == []
    assert len(slow.deliveries) == 1
    assert slow.deliveries[0].ack() is True
    await wait_empty(busy, queue)
    assert watcher.deliveries == []
    assert len(slow.deliveries) == 1
    await sub_slow.close()
    await sub_watch.close()


async def test_each_delivery_that_died_with_its_consumer_counts_as_an_attempt(
    make_driver: MakeDriver, raw: Redis
) -> None:
    driver = await make_driver(claim_idle=0.3)
    queue = await declared(driver)
    stream = driver.stream(queue)
    await driver.publish(queue, [envelope(1)])
    # Two consumers took it in turn and died holding it (the second claimed it from
    # the first): two failed deliveries before anyone finishes it.
    reply: Any = await raw.xreadgroup(GROUP, "ghost-1", {stream: ">"}, count=1)
    entry_id = reply[0][1][0][0]
    await raw.xclaim(stream, GROUP, "ghost-2", 0, [entry_id])
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(1)
    assert sink.deliveries[0].attempts == 3
    await wait_empty(driver, queue)
    await sub.close()


async def test_a_consumer_re_reads_what_its_name_left_pending_before_claim_idle(
    driver: RedisDriver, raw: Redis
) -> None:
    queue = await declared(driver)
    sent = [envelope(i) for i in range(3)]
    await driver.publish(queue, sent)
    name = f"stable-{uuid.uuid4().hex[:6]}"
    # A previous run under the same name read these and died.
    await raw.xreadgroup(GROUP, name, {driver.stream(queue): ">"}, count=3)
    sink = Collector(auto="ack")
    started = time.monotonic()
    sub = await driver.attach(queue, sink, 10, {"consumer_name": name})
    await sink.wait_for(3)
    assert time.monotonic() - started < driver.settings.claim_idle
    assert sink.ids == [e.id for e in sent]
    assert [d.attempts for d in sink.deliveries] == [2, 2, 2]
    await wait_empty(driver, queue)
    await sub.close()


# -- nack, attempts, trimming ---------------------------------------------------------------


async def test_each_nack_redelivers_at_once_with_one_attempt_more(
    driver: RedisDriver, raw: Redis
) -> None:
    queue = await declared(driver)
    sent = envelope(1, b'{"n": 1}', tenant="acme", priority=3)
    await driver.publish(queue, [sent])
    sink = Collector()
    sub = await driver.attach(queue, sink, 5, {})
    for count in range(1, 5):
        await sink.wait_for(count)
        if count < 4:
            assert sink.deliveries[-1].nack() is True
    assert [d.attempts for d in sink.deliveries] == [1, 2, 3, 4]
    assert {d.id for d in sink.deliveries} == {sent.id}
    assert all(d.headers == {"tenant": "acme", "priority": 3} for d in sink.deliveries)
    sink.deliveries[-1].ack()
    await wait_empty(driver, queue)
    assert await raw.xlen(driver.stream(queue)) == 0, "requeues leave no entries behind"
    await sub.close()


async def test_a_late_nack_after_the_entry_was_reclaimed_does_not_duplicate_it(
    driver: RedisDriver, raw: Redis
) -> None:
    # Guards against a consumer whose lease lapsed (event loop blocked past claim_idle)
    # re-adding an entry that another consumer's reclaim has already handed out.
    queue = await declared(driver)
    stream = driver.stream(queue)
    await driver.publish(queue, [envelope(1)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 1, {})
    await sink.wait_for(1)
    await raw.xclaim(stream, GROUP, "someone-else", 0, [sink.deliveries[0].tag])
    assert sink.deliveries[0].nack() is True
    await sub.close()  # returns once queued settlements are flushed
    assert await raw.xlen(stream) == 1, "the nack must not re-add an entry it no longer owns"
    pending = await raw.xpending_range(stream, GROUP, "-", "+", 10)
    assert [row["consumer"] for row in pending] == [b"someone-else"]


async def test_the_keeper_reclaims_nothing_while_its_own_settlements_wait(raw: Redis) -> None:
    # An entry this consumer acked but Redis does not have yet must not come back
    # through its own keeper; once the ack is sent, a silent consumer's entry does.
    require_service("redis", "127.0.0.1", 6379)
    config = settings(claim_idle=0.1)
    stream = f"{config.key_prefix}keeper"
    try:
        await raw.xgroup_create(stream, GROUP, id="0", mkstream=True)
        await raw.xadd(stream, {"i": "m1", "b": "{}"})
        await raw.xreadgroup(GROUP, "silent", {stream: ">"}, count=1)

        async def silent_long_enough() -> bool:
            rows = await raw.xpending_range(stream, GROUP, "-", "+", 1, "silent", idle=100)
            consumers = await raw.xinfo_consumers(stream, GROUP)
            return bool(rows) and all(c["idle"] >= 100 for c in consumers)

        await wait_until_async(silent_long_enough, what="the consumer to fall silent")
        settlements = Settlements(Credit(1))
        settlements.drop(b"1-0")  # an ack of this consumer's, not yet sent
        keeper = LeaseKeeper(Member(raw, config, stream, GROUP, "me"), {}, settlements,
                             Outage())
        await keeper.reclaim()
        assert (await raw.xpending(stream, GROUP))["pending"] == 1
        sent = settlements.take()
        assert sent is not None
        settlements.sent(sent)
        await keeper.reclaim()
        assert (await raw.xpending(stream, GROUP))["pending"] == 0
        assert await raw.xlen(stream) == 1, "given back once, at the tail"
    finally:
        await delete_keys(config.key_prefix)


def swallows_one_cancellation(entered: asyncio.Event) -> Callable[..., Awaitable[Any]]:
    """A Redis call that turns its first cancellation into a connection error, as a
    client library may."""
    swallowed: list[bool] = []

    async def call(*_args: Any, **_kwargs: Any) -> Any:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:  # the first only: a task that goes on can still be stopped
                raise
            swallowed.append(True)
            raise RedisConnectionError("connection closed while reading") from None

    return call


async def test_a_subscription_whose_cancellations_are_swallowed_still_stops_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reader and the lease keeper took such an error for an outage and went on:
    close() waited out its bound for each and left them running behind it."""
    require_service("redis", "127.0.0.1", 6379)
    driver = RedisDriver(settings(claim_idle=60.0, reconnect_delay=30.0,
                                  reconnect_max_delay=30.0))
    await driver.start()
    try:
        queue = await declared(driver)
        sub = await driver.attach(queue, Collector(), 10, {})
        reading, renewing = asyncio.Event(), asyncio.Event()
        sub._read = swallows_one_cancellation(reading)  # type: ignore[method-assign]
        sub.keeper.renew = swallows_one_cancellation(renewing)  # type: ignore[method-assign]
        reader, keeper = sub._reader, sub._keeper
        await asyncio.wait_for(asyncio.gather(reading.wait(), renewing.wait()), 10)
        caplog.clear()  # the shared Redis' own warnings at start
        await sub.close()
        stopped = reader.done(), keeper.done()
        reader.cancel()
        keeper.cancel()
        assert stopped == (True, True), "a task still ran after close()"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        await driver.stop()
        await delete_keys(driver.settings.key_prefix)


async def test_an_unencodable_header_fails_its_own_publish_only(driver: RedisDriver) -> None:
    queue = await declared(driver)
    bad = Envelope("bad", b"{}", {"when": object()})  # type: ignore[dict-item]
    good = [envelope(i) for i in range(10)]
    results = await asyncio.gather(
        driver.publish(queue, [bad]), *(driver.publish(queue, [e]) for e in good),
        return_exceptions=True,
    )
    assert isinstance(results[0], PublishError)
    assert results[1:] == [None] * 10
    assert (await driver.info(queue)).message_count == 10


async def test_a_bounded_queue_never_trims_what_it_holds(driver: RedisDriver, raw: Redis) -> None:
    """Regression: `maxlen` trimmed the stream with MAXLEN ~, losing messages unread;
    `max_length` refuses the publish instead and keeps every message it accepted."""
    driver.settings = driver.settings.model_copy(update={"publish_timeout": 0.2})
    bounded = await declared(driver, max_length=100)
    batch = [envelope(i) for i in range(150)]
    with pytest.raises(QueueFull, match=bounded):
        await driver.publish(bounded, batch)
    assert await raw.xlen(driver.stream(bounded)) == 100
    assert [e.id for e in await driver.peek(bounded, 200)] == [e.id for e in batch[:100]]


def test_the_old_maxlen_option_is_refused_saying_what_to_use() -> None:
    with pytest.raises(ValueError, match="use `max_length`"):
        RedisQueueOptions.model_validate({"maxlen": 1000})


async def test_the_stream_does_not_grow_after_10000_acked_messages(
    driver: RedisDriver, raw: Redis
) -> None:
    queue = await declared(driver)
    stream = driver.stream(queue)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 200, {})
    for start in range(0, 10_000, 1000):
        await driver.publish(queue, [envelope(i) for i in range(start, start + 1000)])
    await sink.wait_for(10_000, timeout_s=30)
    await wait_empty(driver, queue)
    assert await raw.xlen(stream) == 0
    assert (await raw.xpending(stream, GROUP))["pending"] == 0
    memory = await raw.memory_usage(stream)
    assert memory is not None
    assert memory < 16_384, f"{memory} bytes left for an empty stream"
    await sub.close()


# -- outages ------------------------------------------------------------------------------


async def test_tls_settings_wrap_the_connection_in_relevos_context() -> None:
    require_service("redis", "127.0.0.1", 6379)
    tls = {"enabled": True, "insecure_skip_verify": True, "server_name": "redis.internal"}
    client = create_client(settings(url="rediss://127.0.0.1:6379/0", tls=tls))
    connection_class = client.connection_pool.connection_class
    await client.aclose()
    assert issubclass(connection_class, TlsConnection)
    assert connection_class.context.verify_mode == ssl.CERT_NONE
    # The plain-text server on 6379 cannot answer a TLS handshake: TLS is really on.
    driver = RedisDriver(settings(tls=tls, publish_timeout=1.0))
    with pytest.raises(DriverUnavailable):
        await driver.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A durable redis-server of this test's own (free port, AOF, appendfsync always):
    the test may kill and restart it without disturbing anyone else's Redis."""
    if not PrivateRedis.available():
        pytest.skip("needs redis-server to run a Redis of the test's own")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.mark.slow
async def test_consumers_resume_and_publishes_wait_when_redis_restarts(
    private_redis: PrivateRedis,
) -> None:
    url = private_redis.url
    patient = RedisDriver(settings(url=url, publish_timeout=15.0))
    hasty = RedisDriver(settings(url=url, key_prefix=patient.settings.key_prefix,
                                 publish_timeout=0.3))
    await patient.start()
    await hasty.start()
    queue = await declared(patient)
    await hasty.declare(QueueSpec(queue, {}))
    sink = Collector(auto="ack")
    sub = await patient.attach(queue, sink, 50, {})
    before = [envelope(f"before{i}") for i in range(20)]
    await patient.publish(queue, before)
    await sink.wait_for(20)
    try:
        private_redis.kill()
        started = time.monotonic()
        with pytest.raises(DriverUnavailable):
            await hasty.publish(queue, [envelope("lost")])
        assert time.monotonic() - started < 2, "a publish must not hang past its timeout"
        during = envelope("during")
        waiting = asyncio.create_task(patient.publish(queue, [during]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
    finally:
        await asyncio.to_thread(private_redis.start)
    await asyncio.wait_for(waiting, 15)
    after = [envelope(f"after{i}") for i in range(20)]
    await patient.publish(queue, after)
    await sink.wait_for(41, timeout_s=15)
    assert sorted(sink.ids[20:]) == sorted(e.id for e in [during, *after])
    await sub.close()
    await hasty.stop()
    await patient.stop()


@pytest.mark.slow
async def test_after_a_redis_crash_no_entry_a_live_consumer_holds_or_acked_is_reclaimed(
    private_redis: PrivateRedis,
) -> None:
    """Regression: after a Redis restart from its AOF, entries a live consumer still held,
    or had acked while Redis was down (the acks waiting in its flusher's backoff), were
    idle past claim_idle; another consumer's keeper reclaimed them before their owner
    renewed its leases or sent its acks, and they were handled twice."""
    url = private_redis.url
    owner = RedisDriver(settings(url=url, claim_idle=1.0, reconnect_delay=1.0,
                                 reconnect_max_delay=5.0))
    other = RedisDriver(settings(url=url, key_prefix=owner.settings.key_prefix,
                                 claim_idle=1.0))
    await owner.start()
    await other.start()
    queue = await declared(owner)
    held = Collector(auto=None)
    owner_sub = await owner.attach(queue, held, 20, {})
    await owner.publish(queue, [envelope(f"m{i}") for i in range(20)])
    await held.wait_for(20)
    seen = Collector(auto="ack")
    other_sub = await other.attach(queue, seen, 50, {})
    private_redis.kill()
    for delivery in held.deliveries[:10]:  # handled while Redis is down: acks wait
        delivery.ack()
    await asyncio.sleep(1.5)  # longer than claim_idle: every lease has run out
    await asyncio.to_thread(private_redis.start)
    # The other keeper ticks every claim_idle / 3; give it three claim_idle to misbehave.
    await asyncio.sleep(3.0)
    for delivery in held.deliveries[10:]:
        delivery.ack()
    await wait_empty(owner, queue)
    assert seen.ids == [], "entries the live owner held or acked were reclaimed"
    await other_sub.close()
    await owner_sub.close()
    await other.stop()
    await owner.stop()


async def test_a_redis_that_keeps_nothing_on_disk_or_evicts_any_key_gets_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not PrivateRedis.available():
        pytest.skip("needs redis-server to run a Redis of the test's own")
    volatile = PrivateRedis(tmp_path / "volatile", durable=False)
    durable = PrivateRedis(tmp_path / "durable")
    evicting = PrivateRedis(tmp_path / "evicting", options=("--maxmemory-policy", "allkeys-lru"))
    servers = (volatile, durable, evicting)
    try:
        for server in servers:
            server.start()
            for _ in range(2):  # a second driver (or a restart) repeats no warning
                driver = RedisDriver(settings(url=server.url))
                await driver.start()
                await driver.stop()
    finally:
        for server in servers:
            server.kill()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and r.name == "relevo.drivers.redis"]
    assert len(warnings) == 2, warnings
    assert f"127.0.0.1:{volatile.port}/0 keeps nothing on disk" in warnings[0]
    assert "set appendonly yes" in warnings[0]
    assert f"127.0.0.1:{evicting.port}/0 has maxmemory-policy allkeys-lru" in warnings[1]
    assert "set noeviction" in warnings[1]
