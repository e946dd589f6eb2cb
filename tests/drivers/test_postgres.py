"""The PostgreSQL driver against the shared contract, plus what only it promises:
leases and crash recovery, transactional publish, the recorded schema version."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from relevo.drivers.base import QueueSpec
from relevo.drivers.postgres import subscription
from relevo.drivers.postgres.boundary import on_connection
from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.queries import SCHEMA_VERSION
from relevo.errors import DriverUnavailable, PublishError, QueueFull, QueueNotFound
from relevo.message import Envelope, Outcome
from tests.conftest import require_service
from tests.drivers.conformance import Collector, DriverConformance, envelope
from tests.drivers.postgres_support import (
    POSTGRES_DSN,
    MakeDriver,
    drop_schema,
    make_driver,
    settings,
)
from tests.waiting import wait_until_async

pytestmark = pytest.mark.broker

__all__ = ["make_driver"]  # a fixture, imported to be found


@pytest.fixture
async def driver() -> AsyncIterator[PostgresDriver]:
    require_service("postgres", "127.0.0.1", 5432)
    driver = PostgresDriver(settings())
    await driver.start()
    yield driver
    await driver.stop()
    await drop_schema(driver.settings.schema_name)


class TestPostgresConformance(DriverConformance):
    @pytest.fixture
    def crash_settings(self) -> dict[str, Any]:
        return {"claim_idle": 1.0}

    @pytest.fixture
    def unreachable_settings(self) -> dict[str, Any]:
        return {"dsn": "postgresql://postgres@127.0.0.1:1/postgres", "publish_timeout": 1.0}


async def declared(driver: PostgresDriver) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(name, {}))
    return name


async def counts(driver: PostgresDriver, queue: str, **expected: int) -> None:
    async def check() -> bool:
        got = (await driver.info(queue)).as_dict()
        return all(got[key] == value for key, value in expected.items())

    await wait_until_async(check, 10, f"{queue} counts {expected}")


@pytest.fixture
async def raw() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    require_service("postgres", "127.0.0.1", 5432)
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        yield conn


# -- wake-ups, delays ---------------------------------------------------------------------


async def test_an_idle_consumer_wakes_on_notify_not_on_the_safety_poll(
    driver: PostgresDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscription, "SAFETY_POLL_S", 600.0)
    queue = await declared(driver)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await counts(driver, queue, consumer_count=1)
    for n in range(3):  # each publish finds the consumer asleep again
        await driver.publish(queue, [envelope(n)])
        await sink.wait_for(n + 1)
    await sub.close()


async def test_a_delayed_message_waits_in_the_table_until_its_time(
    driver: PostgresDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscription, "SAFETY_POLL_S", 600.0)
    queue = await declared(driver)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    due = time.time() + 1.0
    await driver.publish(queue, [envelope("later")], due=due)
    stats = await driver.info(queue)
    assert (stats.delayed, stats.message_count) == (1, 0)
    assert stats.next_due == pytest.approx(due, abs=0.5)
    await sink.wait_for(1)  # woken by its due time, not by a poll
    assert time.time() >= due - 0.05, "delivered before its due time"
    await counts(driver, queue, message_count=0, delayed=0)
    await sub.close()


async def test_a_nack_with_a_due_time_stores_the_retry_in_one_step(
    driver: PostgresDriver
) -> None:
    queue = await declared(driver)
    await driver.publish(queue, [envelope(1)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(1)
    due = time.time() + 0.5
    driver_sub: Any = sub
    driver_sub.settle(sink.deliveries[0], Outcome.NACK, due)
    await counts(driver, queue, delayed=1, in_flight=0, ready=0)
    await sink.wait_for(2)
    assert sink.deliveries[1].attempts == 2
    assert time.time() >= due - 0.05
    sink.deliveries[1].ack()
    await counts(driver, queue, message_count=0, delayed=0)
    await sub.close()


# -- leases and crash recovery ------------------------------------------------------------


async def test_a_handler_slower_than_claim_idle_keeps_its_message(
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
    # The handler runs for 5x claim_idle while another consumer's keeper reclaims.
    await asyncio.sleep(1.5)
    assert watcher.deliveries == []
    assert slow.deliveries[0].ack() is True
    await counts(busy, queue, message_count=0)
    assert watcher.deliveries == []
    await sub_slow.close()
    await sub_watch.close()


async def test_a_late_nack_after_the_lease_was_reclaimed_changes_nothing(
    driver: PostgresDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    """A consumer whose lease lapsed (its loop blocked past claim_idle) must not put back
    a message another consumer holds now."""
    queue = await declared(driver)
    await driver.publish(queue, [envelope(1)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 1, {})
    await sink.wait_for(1)
    schema = f'"{driver.settings.schema_name}"'
    await raw.execute(f"UPDATE {schema}.leases SET token = 'someone-else'")
    assert sink.deliveries[0].nack() is True
    await sub.close()
    leases = await (await raw.execute(
        f"SELECT token, cardinality(coalesce(open, seqs)), attempts FROM {schema}.leases"))\
        .fetchall()
    assert leases == [("someone-else", 1, [0])]
    assert await (await raw.execute(f"SELECT * FROM {schema}.messages")).fetchall() == []


# -- schema, outages, transactional publish -------------------------------------------------


async def test_a_statement_on_a_closed_pool_fails_at_once_not_after_its_retries() -> None:
    """A pool the driver closed (it is stopping) is not an outage to wait out: a
    statement caught by the stop fails now, not when its publish_timeout runs out."""
    require_service("postgres", "127.0.0.1", 5432)
    pool: AsyncConnectionPool = AsyncConnectionPool(POSTGRES_DSN, min_size=1, open=False)
    await pool.open(wait=True)
    await pool.close()

    async def select(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT 1")

    with pytest.raises(DriverUnavailable):
        await asyncio.wait_for(on_connection(pool, "a select", 60.0, select), 10)


async def test_a_schema_newer_than_this_relevo_is_refused(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    first = await make_driver()
    schema = first.settings.schema_name
    versions = await (await raw.execute(f'SELECT version FROM "{schema}".schema_version'))\
        .fetchall()
    assert versions == [(SCHEMA_VERSION,)]
    await raw.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (999)')
    with pytest.raises(DriverUnavailable, match="version 999"):
        await make_driver()


async def test_index_message_ids_builds_the_id_index_on_an_existing_schema(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    """Off by default (every publish would pay for it); turned on, the next start builds
    it on the tables already there, messages kept, and peek and remove use it."""
    first = await make_driver()
    schema = first.settings.schema_name
    queue = await declared(first)
    sent = [envelope(i) for i in range(3)]
    await first.publish(queue, sent)

    async def indexes() -> list[str]:
        found = await raw.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s"
            " AND tablename = 'messages' AND indexdef LIKE %s",
            (schema, "%USING btree (id)"))
        return [row[0] for row in await found.fetchall()]

    assert await indexes() == []
    second = await make_driver(index_message_ids=True)
    assert await indexes() == ["messages_id"]
    assert [e.id for e in await second.peek(queue, 10, after=sent[0].id)] == \
        [e.id for e in sent[1:]]
    assert await first.remove(queue, [sent[1].id]) == 1  # a driver without it: the same
    assert [e.id for e in await first.peek(queue, 10)] == [sent[0].id, sent[2].id]


async def test_a_message_published_in_a_transaction_exists_only_if_it_commits(
    driver: PostgresDriver,
) -> None:
    queue = await declared(driver)
    committed, rolled_back = envelope("commit"), envelope("rollback")
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN) as conn:
        await driver.publish_in(conn, queue, [committed])
        assert (await driver.info(queue)).ready == 0, "visible before the commit"
        await conn.commit()
        await driver.publish_in(conn, queue, [rolled_back])
        await conn.rollback()
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(1)
    await counts(driver, queue, message_count=0)
    assert sink.ids == [committed.id]
    await sub.close()


async def test_a_transactional_publish_needs_a_psycopg_async_connection(
    driver: PostgresDriver,
) -> None:
    queue = await declared(driver)
    with pytest.raises(PublishError, match="AsyncConnection"):
        await driver.publish_in(object(), queue, [envelope(1)])


async def test_peek_remove_and_purge_touch_only_messages_nobody_holds(
    driver: PostgresDriver,
) -> None:
    queue = await declared(driver)
    sent = [envelope(i, tenant="acme") for i in range(6)]
    await driver.publish(queue, sent)
    sink = Collector()
    sub = await driver.attach(queue, sink, 1, {})
    await sink.wait_for(1)  # sent[0] is in flight
    page = await driver.peek(queue, 2)
    assert [e.id for e in page] == [sent[1].id, sent[2].id]
    assert page[0].headers == {"tenant": "acme"}
    assert [e.id for e in await driver.peek(queue, 10, after=sent[2].id)] == \
        [e.id for e in sent[3:]]
    assert [e.id for e in await driver.peek(queue, 2, after=sent[0].id)] == \
        [sent[1].id, sent[2].id], "a page goes on after a message taken meanwhile"
    assert await driver.remove(queue, [sent[0].id, sent[3].id]) == 1
    await sub.cancel()
    assert await driver.purge(queue) == 4
    await counts(driver, queue, ready=0, in_flight=1)
    sink.deliveries[0].ack()
    await counts(driver, queue, message_count=0)
    await sub.close()


async def test_concurrent_publishes_share_statements_but_not_failures(
    driver: PostgresDriver,
) -> None:
    queue = await declared(driver)
    bad = Envelope("bad", b"{}", {"when": object()})  # type: ignore[dict-item]
    good = [envelope(i) for i in range(50)]
    results = await asyncio.gather(
        driver.publish(queue, [bad]), *(driver.publish(queue, [e]) for e in good),
        driver.publish(f"missing-{uuid.uuid4().hex[:8]}", [envelope("lost")]),
        return_exceptions=True,
    )
    assert isinstance(results[0], PublishError)
    assert results[1:-1] == [None] * 50
    assert isinstance(results[-1], QueueNotFound)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 100, {})
    await sink.wait_for(50)
    assert sink.ids == [e.id for e in good], "publish order is kept"
    await sub.close()


async def test_publishers_that_publish_again_at_once_keep_sharing_statements(
    driver: PostgresDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hundred handlers publishing one message each, over and over: after the first
    lone statement, each statement carries about a hundred messages. The writer once
    let the first caller answered write alone, so statements alternated 1 and 99."""
    queue = await declared(driver)
    publisher: Any = driver._publisher
    sizes: list[int] = []
    write = publisher._write

    async def counted(name: str, rows: Any) -> None:
        sizes.append(len(rows.ids))
        await write(name, rows)

    monkeypatch.setattr(publisher, "_write", counted)

    async def handler(n: int) -> None:
        for i in range(5):
            await driver.publish(queue, [envelope(f"{n}-{i}")])

    await asyncio.gather(*(handler(n) for n in range(100)))
    assert sum(sizes) == 500
    assert len(sizes) <= 7, f"statements of {sizes} messages"


async def test_a_publisher_cancelled_mid_statement_does_not_strand_those_behind_it(
    driver: PostgresDriver,
) -> None:
    """A lone publisher writes its batch itself; publishes arriving meanwhile queue behind
    it. Cancelling it must still let theirs be written, in order."""
    queue = await declared(driver)
    lone = envelope("first")
    first = asyncio.create_task(driver.publish(queue, [lone]))
    await asyncio.sleep(0)  # its statement is in flight now
    behind = [envelope(i) for i in range(5)]
    queued = [asyncio.create_task(driver.publish(queue, [e])) for e in behind]
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.gather(*queued)
    later = envelope("later")
    await driver.publish(queue, [later])  # and the queue was not left busy
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(len(behind) + 1)
    await counts(driver, queue, message_count=0)
    assert [i for i in sink.ids if i != lone.id] == [e.id for e in [*behind, later]]
    await sub.close()


async def test_a_driver_listens_only_once_a_consumer_attaches(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    """A publishing-only driver would read and drop a notification per publish."""
    name = f"relevo-test-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(dsn=f"{POSTGRES_DSN}?application_name={name}")
    queue = await declared(driver)
    await driver.publish(queue, [envelope(1)])

    async def listening() -> int:
        found = await raw.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND query LIKE 'LISTEN %%'", (name,))
        row = await found.fetchone()
        return row[0] if row is not None else 0

    assert await listening() == 0
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    assert await listening() == 1
    await sink.wait_for(1)
    await sub.close()


async def test_a_listening_connection_dropped_before_the_first_consumer_is_reopened(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscription, "SAFETY_POLL_S", 600.0)
    name = f"relevo-test-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(dsn=f"{POSTGRES_DSN}?application_name={name}")
    queue = await declared(driver)
    found = await raw.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s", (name,))
    assert (await found.fetchone()) != (0,)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await driver.publish(queue, [envelope(1)])
    await sink.wait_for(1)  # woken by its NOTIFY: the safety poll is ten minutes away
    await sub.close()


async def test_a_listen_cancelled_on_its_way_closes_its_connection_and_the_next_listens(
    make_driver: MakeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attach cancelled (a consumer's start timing out) while its LISTEN is on the
    way: the connection is closed, not dropped open, and the next attach listens anew."""
    monkeypatch.setattr(subscription, "SAFETY_POLL_S", 600.0)
    driver = await make_driver()
    queue = await declared(driver)
    listener: Any = driver._listener
    idle = listener._idle
    listening = asyncio.create_task(listener.listen())
    await asyncio.sleep(0)  # its LISTEN is on the way now
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert idle.closed
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    await driver.publish(queue, [envelope(1)])
    await sink.wait_for(1)  # woken by its NOTIFY: the safety poll is ten minutes away
    await sub.close()


async def test_a_driver_stopped_while_a_consumer_attaches_leaves_no_listener_behind(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    """stop() while the first attach's LISTEN is on the way: the attach fails, and no
    listening task nor connection outlives the driver."""
    name = f"relevo-test-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(dsn=f"{POSTGRES_DSN}?application_name={name}")
    queue = await declared(driver)
    listener: Any = driver._listener
    attaching = asyncio.create_task(driver.attach(queue, Collector(), 10, {}))
    deadline = time.monotonic() + 10
    while listener._idle is not None:  # each turn: its LISTEN must not have come back yet
        assert time.monotonic() < deadline, "the attach never began to LISTEN"
        await asyncio.sleep(0)
    await driver.stop()
    with pytest.raises(DriverUnavailable):
        await attaching
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "relevo-postgres-listen"]

    async def none_open() -> bool:
        found = await raw.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
        return await found.fetchone() == (0,)

    await wait_until_async(none_open, 10, "its connections to close")


async def test_consumers_and_publishers_carry_on_after_the_server_drops_their_connections(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    """A dropped connection used to kill the driver's loops: telling a lost connection
    from a bug raised TypeError. Here every connection the driver holds (pool and
    LISTEN) is closed under it at once, mid-drain, as a failover or a restart does."""
    name = f"relevo-test-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(dsn=f"{POSTGRES_DSN}?application_name={name}",
                               reconnect_delay=0.05, reconnect_max_delay=0.2)
    queue = await declared(driver)
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 20, {})
    before = [envelope(f"before{i}") for i in range(50)]
    await driver.publish(queue, before)
    await sink.wait_for(50)
    found = await raw.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s", (name,)
    )
    assert (await found.fetchone()) != (0,), "the driver's connections were not found"
    after = [envelope(f"after{i}") for i in range(50)]
    for item in after:  # the first ones meet dead pooled connections
        await driver.publish(queue, [item])
    await sink.wait_for(100)
    assert set(sink.ids) >= {e.id for e in before + after}
    await counts(driver, queue, message_count=0)
    await sub.close()


async def test_drivers_starting_together_create_one_schema_without_racing(
    make_driver: MakeDriver, raw: psycopg.AsyncConnection[Any]
) -> None:
    drivers = await asyncio.gather(*(make_driver() for _ in range(4)))
    schema = drivers[0].settings.schema_name
    versions = await (await raw.execute(f'SELECT version FROM "{schema}".schema_version'))\
        .fetchall()
    assert versions == [(SCHEMA_VERSION,)]


async def test_acks_waiting_for_the_next_claim_are_sent_when_the_consumer_is_cancelled(
    driver: PostgresDriver,
) -> None:
    """Acks travel with the next claim; a subscription cancelled before that claim kept
    them unsent until it was closed, so the queue still counted handled messages."""
    queue = await declared(driver)
    await driver.publish(queue, [envelope(i) for i in range(3)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 3, {})
    await sink.wait_for(3)
    for delivery in sink.deliveries:
        delivery.ack()  # queued for the next claim...
    await sub.cancel()  # ...which never comes if this runs first
    await counts(driver, queue, message_count=0)
    await sub.close()


# -- max_length ---------------------------------------------------------------------------


async def test_a_full_queue_makes_publishers_wait_then_fail_with_queue_full(
    make_driver: MakeDriver,
) -> None:
    driver = await make_driver(publish_timeout=0.3)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(queue, {"max_length": 3}))
    await driver.publish(queue, [envelope(i) for i in range(3)])
    with pytest.raises(QueueFull):
        await driver.publish(queue, [envelope("over")])
    await driver.publish(queue, [envelope("later")], due=time.time() + 60)  # not bounded
    stats = await driver.info(queue)
    assert (stats.message_count, stats.delayed) == (3, 1), "a bound never drops or overfills"


async def test_a_waiting_publisher_gets_in_when_a_consumer_makes_room(
    make_driver: MakeDriver,
) -> None:
    driver = await make_driver(publish_timeout=10.0)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(queue, {"max_length": 2}))
    first = [envelope(i) for i in range(2)]
    await driver.publish(queue, first)
    waiting = asyncio.create_task(driver.publish(queue, [envelope("third")]))
    sink = Collector()
    sub = await driver.attach(queue, sink, 2, {})
    await sink.wait_for(2)
    assert not waiting.done(), "two in flight still fill a queue of two"
    sink.deliveries[0].ack()
    await asyncio.wait_for(waiting, 10)
    await sink.wait_for(3)
    await sub.close()


async def test_a_transactional_publish_to_a_full_queue_fails_at_once(
    make_driver: MakeDriver,
) -> None:
    driver = await make_driver()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(queue, {"max_length": 1}))
    await driver.publish(queue, [envelope(1)])
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN) as conn:
        with pytest.raises(QueueFull):
            await driver.publish_in(conn, queue, [envelope(2)])
