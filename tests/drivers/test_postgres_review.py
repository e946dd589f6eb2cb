"""The PostgreSQL driver's leases where the database and the subscription's bookkeeping
may part: a settlement the server forgot in a crash, a claim whose follow-up statement
failed."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from relevo.drivers.postgres.driver import PostgresDriver
from tests.drivers.conformance import Collector, envelope
from tests.drivers.postgres_support import MakeDriver, make_driver
from tests.drivers.test_postgres import counts, declared, raw
from tests.drivers.test_postgres_leases import rows, tables
from tests.waiting import wait_until_async

pytestmark = pytest.mark.broker

__all__ = ["make_driver", "raw"]  # fixtures, imported to be found

Raw = psycopg.AsyncConnection[Any]


async def test_a_nack_the_server_forgot_is_not_lost_when_the_rest_of_its_batch_is_acked(
    make_driver: MakeDriver, raw: Raw
) -> None:
    """The settle statement commits without waiting for the WAL flush: a server crash
    may forget a nack that the subscription already counts as written, leaving the
    message open in its lease row and not in `messages`. Acking the rest of the batch
    must not delete that row with the message still in it: it comes back once the
    lease runs out, its attempt counted."""
    driver: PostgresDriver = await make_driver(claim_idle=1.0)
    queue = await declared(driver)
    messages, leases = tables(driver)
    await driver.publish(queue, [envelope(0), envelope(1)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 2, {})
    await sink.wait_for(2)
    m0, m1 = sink.deliveries
    [(lease_id,)] = await rows(raw, f"SELECT id FROM {leases}")

    assert m0.nack(delay=3600) is True  # delayed: the subscription does not take it again
    await counts(driver, queue, delayed=1, in_flight=1)
    # What the server recovers to when it forgets that nack: m0 open in its lease again.
    await raw.execute(f"DELETE FROM {messages} WHERE seq = %s", (m0.tag,))
    await raw.execute(f"UPDATE {leases} SET open = NULL WHERE id = %s", (lease_id,))
    await counts(driver, queue, delayed=0, in_flight=2)

    assert m1.ack() is True  # the lease's last unsettled delivery: written by the claim

    async def m1_written() -> bool:
        found = await rows(raw, f"SELECT open FROM {leases} WHERE id = %s", lease_id)
        return found != [(None,)]

    await wait_until_async(m1_written, 10, "the claim to write m1's ack")
    assert await rows(raw, f"SELECT open FROM {leases} WHERE id = %s", lease_id) == \
        [([m0.tag],)], "the lease row went with m0 still open in it: m0 is lost"
    await sink.wait_for(3)  # the lease ran out: m0 is back, and taken again
    assert (sink.deliveries[2].id, sink.deliveries[2].attempts) == (m0.id, 2)
    assert sink.deliveries[2].ack() is True
    await counts(driver, queue, message_count=0, in_flight=0, delayed=0)
    await sub.close()


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


async def test_rows_claimed_are_delivered_when_the_next_due_lookup_after_the_claim_fails(
    make_driver: MakeDriver, raw: Raw
) -> None:
    """A claim that took fewer rows than asked looks up the next delayed row's due time
    in a second statement. The claim is committed by then: should the connection drop
    during that lookup, the rows it took are this subscription's all the same and go
    out now, not after their lease ran out with an attempt counted that no handler
    made."""
    driver: PostgresDriver = await make_driver(claim_idle=30.0)
    schema = driver.settings.schema_name
    queue = await declared(driver)
    messages, leases = tables(driver)
    await driver.publish(queue, [envelope(0)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 3, {})
    await sink.wait_for(1)
    [m0] = sink.deliveries
    [(lease_id,)] = await rows(raw, f"SELECT id FROM {leases}")
    m1 = envelope(1)

    dsn = raw.info.dsn
    async with await psycopg.AsyncConnection.connect(dsn) as holder, \
            await psycopg.AsyncConnection.connect(dsn) as locker:
        # The claim that writes m0's ack (and takes m1) waits for m0's lease row...
        await holder.execute(f"SELECT 1 FROM {leases} WHERE id = %s FOR UPDATE", (lease_id,))
        async with sub._writing:  # ...and starts only once m1 is in
            assert m0.ack() is True
            await driver.publish(queue, [m1])
        await waiting_on_a_lock(raw, schema, "set_config('synchronous_commit'")
        # ...with a table lock queued behind it, which the lookup after it then waits for.
        locking = asyncio.ensure_future(
            locker.execute(f"LOCK TABLE {messages} IN ACCESS EXCLUSIVE MODE"))
        await waiting_on_a_lock(raw, schema, "LOCK TABLE")
        await holder.rollback()
        lookup = await waiting_on_a_lock(raw, schema, "min(due) - now()")
        await raw.execute("SELECT pg_terminate_backend(%s)", (lookup,))
        await locking
        await locker.rollback()

    await sink.wait_for(2)
    assert (sink.deliveries[1].id, sink.deliveries[1].attempts) == (m1.id, 1)
    assert sink.deliveries[1].ack() is True
    await counts(driver, queue, message_count=0, in_flight=0)
    await sub.close()
