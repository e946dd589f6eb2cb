"""The PostgreSQL driver's leases where the database and the subscription's bookkeeping
may part: a claim whose follow-up statement failed, a claim whose rows the fetch loop
never handed out; what commits without waiting for the disk; and the upgrade of an
early version-1 schema."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from relevo.drivers.base import QueueSpec
from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.queries import Queries
from relevo.drivers.postgres.subscription import PostgresSubscription
from relevo.errors import QueueFull
from relevo.message import Delivery, Envelope
from tests.drivers.conformance import Collector, envelope
from tests.drivers.postgres_support import (
    MakeDriver,
    drop_schema,
    make_driver,
    settings,
    unique_schema,
)
from tests.drivers.test_postgres import counts, declared, raw
from tests.drivers.test_postgres_leases import V1_DDL, rows, tables
from tests.waiting import wait_until_async

pytestmark = pytest.mark.broker

__all__ = ["make_driver", "raw"]  # fixtures, imported to be found

Raw = psycopg.AsyncConnection[Any]


def test_only_claims_commit_without_waiting_for_the_disk() -> None:
    """A crash forgets only the last commits. A claim (with the acks it writes) may be
    among them: its rows are delivered again. What puts a message back into the queue
    (a nack, a release, a reclaim, a close) must not: a later claim deletes the lease
    row with its batch's last ack, and a forgotten nack would go with it."""
    q = Queries("s")
    assert "set_config('synchronous_commit', 'off', true)" in q.claim
    for statement in (q.settle, q.give_back, q.reclaim, q.publish):
        assert "synchronous_commit" not in statement


async def waiting_on_a_lock(raw: Raw, schema: str, text: str) -> int:
    """The backend whose statement (naming `schema` and containing `text`) waits for a
    lock, once there is one."""
    found: list[int] = []

    async def check() -> bool:
        found[:] = [row[0] for row in await rows(
            raw, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND strpos(query, %s) > 0 AND strpos(query, %s) > 0", schema, text)]
        return len(found) == 1

    await wait_until_async(check, 10, f"a statement with {text!r} waiting for a lock")
    return found[0]



@contextlib.asynccontextmanager
async def lookup_held_after_a_claim(
    raw: Raw, driver: PostgresDriver, sub: PostgresSubscription, ack: Delivery,
    publish: Envelope,
) -> AsyncIterator[int]:
    """Hold the subscription between its claim and the next-due lookup after it: the
    claim that writes `ack` (the last unsettled delivery of its lease) and takes
    `publish` has committed, the lookup waits for a table lock. Yields the lookup's
    backend pid; the lock goes on the way out."""
    schema = driver.settings.schema_name
    messages, leases = tables(driver)
    [(lease_id,)] = await rows(raw, f"SELECT id FROM {leases}")
    dsn = raw.info.dsn
    async with await psycopg.AsyncConnection.connect(dsn) as holder, \
            await psycopg.AsyncConnection.connect(dsn) as locker:
        # The claim that writes the ack waits for the acked lease's row...
        await holder.execute(f"SELECT 1 FROM {leases} WHERE id = %s FOR UPDATE", (lease_id,))
        async with sub._writing:  # ...and starts only once `publish` is in
            assert ack.ack() is True
            await driver.publish(sub.queue, [publish])
        await waiting_on_a_lock(raw, schema, "set_config('synchronous_commit'")
        # ...with a table lock queued behind it, which the lookup after it then waits for.
        locking = asyncio.ensure_future(
            locker.execute(f"LOCK TABLE {messages} IN ACCESS EXCLUSIVE MODE"))
        await waiting_on_a_lock(raw, schema, "LOCK TABLE")
        await holder.rollback()
        yield await waiting_on_a_lock(raw, schema, "min(due) - now()")
        await locking
        await locker.rollback()


async def test_rows_claimed_are_delivered_when_the_next_due_lookup_after_the_claim_fails(
    make_driver: MakeDriver, raw: Raw
) -> None:
    """A claim that took fewer rows than asked looks up the next delayed row's due time
    in a second statement. The claim is committed by then: should the connection drop
    during that lookup, the rows it took are this subscription's all the same and go
    out now, not after their lease ran out with an attempt counted that no handler
    made."""
    driver: PostgresDriver = await make_driver(claim_idle=30.0)
    queue = await declared(driver)
    await driver.publish(queue, [envelope(0)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 3, {})
    await sink.wait_for(1)
    [m0] = sink.deliveries
    m1 = envelope(1)
    async with lookup_held_after_a_claim(raw, driver, sub, m0, m1) as lookup:
        await raw.execute("SELECT pg_terminate_backend(%s)", (lookup,))

    await sink.wait_for(2)
    assert (sink.deliveries[1].id, sink.deliveries[1].attempts) == (m1.id, 1)
    assert sink.deliveries[1].ack() is True
    await counts(driver, queue, message_count=0, in_flight=0)
    await sub.close()


async def test_rows_claimed_but_not_handed_out_when_the_fetch_loop_stopped_wait_for_close(
    make_driver: MakeDriver, raw: Raw
) -> None:
    """cancel() may stop the fetch loop after a claim committed and before its rows were
    handed out. Those rows stay this subscription's, their lease extended, until close()
    gives them back with no attempt counted (no handler had them), however long the
    handlers still running take after cancel()."""
    driver: PostgresDriver = await make_driver(claim_idle=1.0)
    queue = await declared(driver)
    messages, leases = tables(driver)
    await driver.publish(queue, [envelope(0)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 3, {})
    await sink.wait_for(1)
    [m0] = sink.deliveries
    m1 = envelope(1)
    async with lookup_held_after_a_claim(raw, driver, sub, m0, m1):
        await sub.cancel()
    [(lease_id, until)] = await rows(raw, f"SELECT id, until FROM {leases}")

    async def run_out() -> bool:
        [(now,)] = await rows(raw, "SELECT now()")
        return bool(now > until + timedelta(seconds=1.0))

    await wait_until_async(run_out, 10, "the claim's first lease end to pass")
    assert await rows(raw, f"SELECT id FROM {leases}") == [(lease_id,)], \
        "the lease of rows no handler had ran out"
    assert len(sink.deliveries) == 1
    await sub.close()
    assert await rows(raw, f"SELECT id, attempts FROM {messages}") == [(m1.id, 0)]


async def test_a_driver_starting_on_a_schema_in_use_does_not_wait_for_its_readers(
    make_driver: MakeDriver, raw: Raw
) -> None:
    """Each start runs schema.sql; setting the lease arrays' compression is an ALTER
    TABLE, whose lock waits for every transaction reading `leases` (a claim in flight,
    a long peek) and holds off every claim behind it. Done once, when the table is new."""
    first = await make_driver()
    _, leases = tables(first)
    async with await psycopg.AsyncConnection.connect(raw.info.dsn) as reader:
        await reader.execute(f"SELECT count(*) FROM {leases}")  # its transaction stays open
        await asyncio.wait_for(make_driver(), 10)
        await reader.rollback()


async def test_a_version_1_schema_from_before_bounded_queues_is_upgraded(raw: Raw) -> None:
    """Version 1 first had no `max_length` in `queues`; its drivers added the column at
    start. The upgrade to version 2 adds it too, or no queue could be declared. It also
    had an index on (queue, id) named `messages_id`, which every publish paid for: gone,
    and the name is free for index_message_ids."""
    schema = unique_schema()
    s = f'"{schema}"'
    await raw.execute(V1_DDL.replace("{schema}", s))
    await raw.execute(f"ALTER TABLE {s}.queues DROP COLUMN max_length")
    await raw.execute(f"CREATE INDEX messages_id ON {s}.messages (queue, id)")
    driver = PostgresDriver(settings(schema=schema, publish_timeout=1.0))
    try:
        await driver.start()
        assert await rows(raw, "SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                               "AND indexdef LIKE %s", schema, "%(queue, id)%") == []
        queue = f"q-{uuid.uuid4().hex[:8]}"
        await driver.declare(QueueSpec(queue, {"max_length": 1}))
        await driver.publish(queue, [envelope(0)])
        with pytest.raises(QueueFull):
            await driver.publish(queue, [envelope(1)])
        await counts(driver, queue, ready=1)
    finally:
        await driver.stop()
        await drop_schema(schema)
