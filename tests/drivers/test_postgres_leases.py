"""The PostgreSQL driver's leases (schema version 2): a claim moves its batch into one
lease row, acks only shrink the row's `open` seqs, nacks and releases put a message back
under its own seq, and a version-1 schema is upgraded at start."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.subscription import PostgresSubscription
from tests.drivers.conformance import Collector, envelope
from tests.drivers.postgres_support import (
    MakeDriver,
    drop_schema,
    make_driver,
    settings,
    unique_schema,
)
from tests.drivers.test_postgres import counts, declared, driver, raw

pytestmark = pytest.mark.broker

__all__ = ["driver", "make_driver", "raw"]  # fixtures, imported to be found

Raw = psycopg.AsyncConnection[Any]


def tables(driver: PostgresDriver) -> tuple[str, str]:
    """The quoted `messages` and `leases` tables of the driver's schema."""
    schema = f'"{driver.settings.schema_name}"'
    return f"{schema}.messages", f"{schema}.leases"


async def rows(raw: Raw, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return await (await raw.execute(query, params or None)).fetchall()


# -- upgrade from schema version 1 ---------------------------------------------------------

# The version-1 tables as that relevo created them (with index_message_ids on): a message
# in flight stayed in its row, leased in place through locked_until and locked_by.
V1_DDL = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.schema_version (
    version     integer     NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {schema}.queues (
    name        text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    max_length  integer
);
CREATE TABLE {schema}.messages (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL,
    id            text        NOT NULL,
    body          bytea       NOT NULL,
    headers       bytea,
    attempts      integer     NOT NULL DEFAULT 0,
    due           timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz,
    locked_by     text
);
CREATE INDEX messages_ready
    ON {schema}.messages (queue, due, seq) WHERE locked_until IS NULL;
CREATE INDEX messages_leased
    ON {schema}.messages (queue, locked_until) WHERE locked_until IS NOT NULL;
CREATE INDEX messages_ready_id
    ON {schema}.messages (id) WHERE locked_until IS NULL;
CREATE TABLE {schema}.consumers (
    token      text        PRIMARY KEY,
    queue      text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.schema_version (version) VALUES (1);
"""


@pytest.fixture
async def v1_schema(raw: Raw) -> AsyncIterator[str]:
    """A schema at version 1, dropped afterwards."""
    schema = unique_schema()
    await raw.execute(V1_DDL.replace("{schema}", f'"{schema}"'))
    yield schema
    await drop_schema(schema)


async def test_a_version_1_schema_is_upgraded_and_its_leased_rows_come_back(
    v1_schema: str, raw: Raw
) -> None:
    """A row leased under version 1 by a consumer that is gone now is ready again after
    the upgrade, with the attempt its holder never settled counted."""
    s = f'"{v1_schema}"'
    queue = f"q-{uuid.uuid4().hex[:8]}"
    await raw.execute(f"INSERT INTO {s}.queues (name) VALUES (%s)", (queue,))
    await raw.execute(
        f"INSERT INTO {s}.messages (queue, id, body, attempts) VALUES (%s, 'waiting', 'w', 0)",
        (queue,))
    await raw.execute(
        f"INSERT INTO {s}.messages (queue, id, body, attempts, locked_until, locked_by) "
        "VALUES (%s, 'leased', 'l', 0, now() + interval '1 hour', 'gone')", (queue,))

    driver = PostgresDriver(settings(schema=v1_schema))
    await driver.start()
    try:
        assert await rows(raw, f"SELECT version FROM {s}.schema_version ORDER BY version") \
            == [(1,), (2,)]
        columns = {row[0] for row in await rows(
            raw, "SELECT column_name FROM information_schema.columns "
                 "WHERE table_schema = %s AND table_name = 'messages'", v1_schema)}
        assert columns == {"seq", "queue", "id", "body", "headers", "attempts", "due"}
        indexes = {row[0] for row in await rows(
            raw, "SELECT indexname FROM pg_indexes WHERE schemaname = %s", v1_schema)}
        assert not indexes & {"messages_ready", "messages_leased", "messages_ready_id"}
        stats = await driver.info(queue)
        assert (stats.ready, stats.in_flight) == (2, 0)

        sink = Collector(auto="ack")
        sub = await driver.attach(queue, sink, 10, {})
        await sink.wait_for(2)
        await counts(driver, queue, message_count=0)
        assert sorted((d.id, d.body, d.attempts) for d in sink.deliveries) == \
            [("leased", b"l", 2), ("waiting", b"w", 1)]
        await sub.close()
    finally:
        await driver.stop()


# -- acks -----------------------------------------------------------------------------------


async def test_partial_acks_leave_exactly_the_unacked_seqs_open(
    driver: PostgresDriver, raw: Raw
) -> None:
    queue = await declared(driver)
    _, leases = tables(driver)
    await driver.publish(queue, [envelope(i) for i in range(10)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(10)
    acked = [sink.deliveries[i] for i in (0, 3, 5, 9)]  # not a prefix of the batch
    rest = [d for d in sink.deliveries if d not in acked]
    for delivery in acked:
        assert delivery.ack() is True
    await counts(driver, queue, in_flight=6, ready=0)
    found = await rows(raw, f"SELECT open, seqs FROM {leases}")
    assert len(found) == 1, "one claim, one lease row"
    open_seqs, seqs = found[0]
    assert sorted(open_seqs) == sorted(d.tag for d in rest)
    assert sorted(seqs) == sorted(d.tag for d in sink.deliveries)

    for delivery in rest:
        assert delivery.ack() is True
    await counts(driver, queue, in_flight=0, ready=0)
    assert await rows(raw, f"SELECT id FROM {leases}") == []
    assert len(sink.deliveries) == 10, "an acked message came again"
    await sub.close()


# -- settle ---------------------------------------------------------------------------------


async def test_a_settle_statement_applied_twice_stores_the_message_back_once(
    driver: PostgresDriver, raw: Raw
) -> None:
    """A nack whose reply was lost is sent again: the message is back once, and once
    another consumer has taken it, the repeat does not put it back beside that one."""
    queue = await declared(driver)
    messages, leases = tables(driver)
    await driver.publish(queue, [envelope(i) for i in range(3)])
    sink = Collector()
    sub: PostgresSubscription = await driver.attach(queue, sink, 3, {})
    await sink.wait_for(3)
    [(lease_id,)] = await rows(raw, f"SELECT id FROM {leases}")
    nacked = sink.deliveries[1]
    params = {"token": sub.token, "leases": [lease_id], "settled": [nacked.tag],
              "back": [nacked.tag], "bumps": [1], "dues": [None], "keep": [False]}

    stored = f"SELECT id, attempts FROM {messages} WHERE seq = %s"

    assert (await raw.execute(driver.queries.settle, params)).rowcount == 1
    assert await rows(raw, stored, nacked.tag) == [(nacked.id, 1)]
    assert (await raw.execute(driver.queries.settle, params)).rowcount == 0
    assert await rows(raw, stored, nacked.tag) == [(nacked.id, 1)]
    [(open_seqs,)] = await rows(raw, f"SELECT open FROM {leases} WHERE id = %s", lease_id)
    assert sorted(open_seqs) == sorted(d.tag for d in sink.deliveries if d is not nacked)

    other = Collector()
    other_sub = await driver.attach(queue, other, 1, {})
    await other.wait_for(1)
    assert (other.ids, other.deliveries[0].attempts) == ([nacked.id], 2)
    assert (await raw.execute(driver.queries.settle, params)).rowcount == 0
    assert await rows(raw, stored, nacked.tag) == [], "back while another consumer holds it"
    await counts(driver, queue, ready=0, in_flight=3)
    await other_sub.close()
    await sub.close()


# -- claim_batch ----------------------------------------------------------------------------


async def test_a_prefetch_larger_than_claim_batch_claims_in_batches_of_claim_batch(
    make_driver: MakeDriver, raw: Raw
) -> None:
    driver = await make_driver(claim_batch=100)
    queue = await declared(driver)
    _, leases = tables(driver)
    sent = [envelope(i) for i in range(250)]
    await driver.publish(queue, sent)
    sink = Collector()
    sub = await driver.attach(queue, sink, 250, {})
    await sink.wait_for(250)
    await counts(driver, queue, in_flight=250, ready=0)
    assert sorted(sink.ids) == sorted(e.id for e in sent)
    sizes = sorted(row[0] for row in await rows(
        raw, f"SELECT cardinality(seqs) FROM {leases} WHERE queue = %s", queue))
    assert sizes == [50, 100, 100]

    for delivery in sink.deliveries:
        delivery.ack()
    await counts(driver, queue, message_count=0)
    assert await rows(raw, f"SELECT id FROM {leases}") == []
    assert len(sink.deliveries) == 250
    await sub.close()


# -- nack and release within a batch --------------------------------------------------------


async def test_a_nack_puts_back_one_message_of_a_batch_and_a_release_its_original_place(
    driver: PostgresDriver, raw: Raw
) -> None:
    """m0..m4 are one batch and m5 waits. A nack of m1 puts only m1 back, at the tail
    (the freed credit takes m5, published before the nack); the others stay held. A
    release of m2 puts it back in its original place: ahead of m1 and of a message
    published after it."""
    queue = await declared(driver)
    messages, leases = tables(driver)
    sent = [envelope(i) for i in range(6)]
    await driver.publish(queue, sent)
    sink = Collector()
    sub = await driver.attach(queue, sink, 5, {})
    await sink.wait_for(5)
    assert sink.ids == [e.id for e in sent[:5]]
    batch = list(sink.deliveries)
    m1, m2 = batch[1], batch[2]

    assert m1.nack() is True
    await sink.wait_for(6)
    await counts(driver, queue, in_flight=5, ready=1)
    assert sink.ids[5] == sent[5].id, "the nacked message was not put behind those waiting"
    assert await rows(raw, f"SELECT seq, id, attempts FROM {messages}") == \
        [(m1.tag, m1.id, 1)]
    [(open_seqs,)] = await rows(
        raw, f"SELECT open FROM {leases} WHERE %s = ANY(seqs)", m1.tag)
    assert sorted(open_seqs) == sorted(d.tag for d in batch if d is not m1)

    later = envelope("later")
    await driver.publish(queue, [later])
    await sub.cancel()  # no claims from here on: the order is read by the next consumer
    assert m2.release() is True
    await counts(driver, queue, in_flight=4, ready=3)

    reader = Collector(auto="ack")
    reader_sub = await driver.attach(queue, reader, 1, {})
    await reader.wait_for(3)
    assert [(d.id, d.attempts) for d in reader.deliveries] == \
        [(m2.id, 1), (m1.id, 2), (later.id, 1)]
    await counts(driver, queue, ready=0, in_flight=4)
    await reader_sub.close()
    await sub.close()
