"""PostgreSQL throughput: relevo's postgres driver next to a raw psycopg SKIP LOCKED loop,
and procrastinate where installed.

    python -m benchmarks.bench_postgres [--messages 10000] [--skip-peers]

One process, small messages, batches of 100 everywhere. Nine rounds, each measuring the
raw psycopg baseline right before the driver, in the same process; the table shows the
best of each figure, and the per-round ratios are printed too (on a shared machine a
single run's ratio can move by 2x either way).

Like with like: the baseline and relevo write the same payload (47-byte body, relevo's
message IDs) in the same batches (100 rows per publish statement, 100 per claim), into a
table of the same shape: relevo's own `messages` columns (seq, queue, id, body, headers,
attempts, due) and its index on (queue, due, seq), so both publish and claim pay for the
same two indexes and the same row width. What relevo adds is its lease: one row per
claimed batch in its `leases` table, written by the claim statement itself.

The baseline: publish is one `INSERT ... SELECT FROM unnest` of 100 rows per statement;
drain is one `DELETE ... WHERE seq = ANY(ARRAY(SELECT seq ... WHERE queue = .. ORDER BY
due, seq LIMIT 100 FOR UPDATE SKIP LOCKED)) RETURNING` per batch, in a loop: the least
work a queue on PostgreSQL can do (no lease, no attempt count, nothing survives a crash
between claim and handling). `= ANY(ARRAY(...))`, not `IN (...)`: written as a join, the
planner hashes the hundred picked rows and reads the whole table to find them whenever
the table is small enough for that to look cheaper (thousands of rows), here as in the
driver's claim, which probes the primary key the same way. A second raw row shows the
loop most applications write: claim and delete in one transaction. relevo drains
through one subscription (prefetch 100, 16 workers acking), and again with a prefetch of
two batches (200; claims stay at 100 rows), where the next claim runs while the workers
handle the last batch. procrastinate (the peer)
defers in batches of 100 and runs one worker with concurrency 16.

Needs PostgreSQL at $RELEVO_POSTGRES_DSN (default
postgresql://postgres@127.0.0.1:5432/postgres); every table lives in throwaway schemas,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import textwrap
import time
import uuid
from typing import Any

import psycopg

from benchmarks.broker_rows import Row, drain_driver, rate, table
from relevo.drivers.base import QueueSpec
from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.settings import PostgresSettings
from relevo.message import Envelope
from relevo.queue import message_ids

next_id = message_ids.next  # the IDs relevo gives messages, for the raw loop too

DSN = os.environ.get("RELEVO_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
CONCURRENCY = 16
BATCH = 100  # rows per publish statement, per raw claim, and relevo's prefetch
BODY = b'{"id": "task-123", "action": "process", "n": 1}'
PEER_TIMEOUT_S = 45.0
ROUNDS = 9
RUN = uuid.uuid4().hex[:8]
SCHEMAS = {"raw": f"relevo_bench_raw_{RUN}", "relevo": f"relevo_bench_{RUN}",
           "procrastinate": f"relevo_bench_procrastinate_{RUN}"}

# Arrays go as binary parameters (%b) here as in the driver: psycopg's text array dumper
# costs more Python time per batch than the statement itself.
# The baseline's table: relevo's messages table and its index on (queue, due, seq);
# made anew by each measurement (as relevo's schema is), so no round inherits dead rows.
# ANALYZED: every measurement analyzes its table between publishing and draining (not
# timed), as autovacuum would have: a freshly filled table without statistics gets a
# sequential-scan plan for the claim, which would time the planner, not the queue.
TABLE = """
    DROP TABLE IF EXISTS {schema}.jobs;
    CREATE TABLE {schema}.jobs (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, queue text NOT NULL,
        id text NOT NULL, body bytea NOT NULL, headers bytea,
        attempts integer NOT NULL DEFAULT 0, due timestamptz NOT NULL DEFAULT now());
    CREATE INDEX jobs_ready ON {schema}.jobs (queue, due, seq)"""
INSERT = ("INSERT INTO {schema}.jobs (queue, id, body) "
          "SELECT 'bench', * FROM unnest(%b::text[], %b::bytea[])")


async def connect(**options: Any) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(DSN, autocommit=True, **options)


# -- raw psycopg: the baseline ---------------------------------------------------------


async def raw_psycopg(count: int) -> Row:
    schema = SCHEMAS["raw"]
    async with await connect() as conn:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(TABLE.format(schema=schema))
        insert = INSERT.format(schema=schema)
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            size = min(BATCH, count - first)
            await conn.execute(insert, ([next_id() for _ in range(size)], [BODY] * size))
        published = rate(count, started)
        await conn.execute(f"ANALYZE {schema}.jobs")  # see ANALYZED

        claim = (f"DELETE FROM {schema}.jobs WHERE seq = ANY(ARRAY(SELECT seq FROM "
                 f"{schema}.jobs WHERE queue = 'bench' ORDER BY due, seq LIMIT {BATCH} "
                 "FOR UPDATE SKIP LOCKED)) RETURNING id, body, headers, attempts")
        seen = 0
        started = time.perf_counter()
        while seen < count:
            cur = await conn.execute(claim)
            seen += len(await cur.fetchall())
        drained = rate(count, started)
    return Row("raw psycopg SKIP LOCKED (baseline)", published, drained,
               f"INSERT unnest x{BATCH}; DELETE .. SKIP LOCKED x{BATCH} RETURNING")


async def raw_thin(count: int) -> Row:
    """The baseline's loop on the thinnest table a queue can have (seq, id, body; one
    queue, the primary key as the only index): what the table shape itself costs."""
    schema = SCHEMAS["raw"]
    async with await connect() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {schema}.thin; CREATE TABLE {schema}.thin "
                           "(seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                           "id text NOT NULL, body bytea NOT NULL)")
        insert = (f"INSERT INTO {schema}.thin (id, body) "
                  "SELECT * FROM unnest(%b::text[], %b::bytea[])")
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            size = min(BATCH, count - first)
            await conn.execute(insert, ([next_id() for _ in range(size)], [BODY] * size))
        published = rate(count, started)
        await conn.execute(f"ANALYZE {schema}.thin")
        claim = (f"DELETE FROM {schema}.thin WHERE seq = ANY(ARRAY(SELECT seq FROM "
                 f"{schema}.thin ORDER BY seq LIMIT {BATCH} FOR UPDATE SKIP LOCKED)) "
                 "RETURNING id, body")
        seen = 0
        started = time.perf_counter()
        while seen < count:
            seen += len(await (await conn.execute(claim)).fetchall())
        drained = rate(count, started)
    return Row("raw psycopg, thin table (seq, id, body)", published, drained,
               "same loop; no queue column, no ready index")


async def raw_transactional(count: int) -> Row:
    """The loop most applications write: claim in a transaction, handle, delete, commit
    (the transaction, not a lease, holds the rows while they are handled)."""
    schema = SCHEMAS["raw"]
    async with await connect() as conn:
        await conn.execute(TABLE.format(schema=schema))
        insert = INSERT.format(schema=schema)
        for first in range(0, count, BATCH):
            size = min(BATCH, count - first)
            await conn.execute(insert, ([next_id() for _ in range(size)], [BODY] * size))
        await conn.execute(f"ANALYZE {schema}.jobs")
        claim = (f"SELECT seq, id, body, headers, attempts FROM {schema}.jobs "
                 f"WHERE queue = 'bench' ORDER BY due, seq LIMIT {BATCH} FOR UPDATE SKIP LOCKED")
        delete = f"DELETE FROM {schema}.jobs WHERE seq = ANY(%s)"
        seen = 0
        started = time.perf_counter()
        while seen < count:
            async with conn.transaction():
                rows = await (await conn.execute(claim)).fetchall()
                await conn.execute(delete, ([row[0] for row in rows],))
            seen += len(rows)
        drained = rate(count, started)
    return Row("raw psycopg, claim + delete in a transaction", None, drained,
               f"BEGIN; SELECT .. SKIP LOCKED x{BATCH}; DELETE; COMMIT")


# -- relevo: the driver ------------------------------------------------------------------


async def fresh_driver(name: str) -> PostgresDriver:
    """A started driver on new tables (as the baseline's), with queue `name` declared."""
    async with await connect() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMAS['relevo']} CASCADE")
    driver = PostgresDriver(
        PostgresSettings.model_validate({"dsn": DSN, "schema": SCHEMAS["relevo"]}))
    await driver.start()
    await driver.declare(QueueSpec(name, {}))
    return driver


async def publish_batches(driver: PostgresDriver, name: str, count: int) -> float:
    """Publish `count` messages in batches; the rate. Then ANALYZE (see ANALYZED)."""
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        size = min(BATCH, count - first)
        await driver.publish(name, [Envelope(next_id(), BODY) for _ in range(size)])
    published = rate(count, started)
    async with await connect() as conn:
        await conn.execute(f"ANALYZE {SCHEMAS['relevo']}.messages")
    return published


async def relevo_driver(count: int) -> list[Row]:
    name = "driver"
    driver = await fresh_driver(name)
    try:
        batch_rate = await publish_batches(driver, name, count)
        drained = await drain_driver(driver, name, count, CONCURRENCY, BATCH)

        # One message per publish call, 100 publishers at once: `app.publish` from many
        # handlers (each call one statement on a pooled connection).
        single = count // 10
        per_task = single // BATCH

        async def publisher() -> None:
            for _ in range(per_task):
                await driver.publish(name, [Envelope(next_id(), BODY)])

        started = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(BATCH)))
        single_rate = rate(per_task * BATCH, started)
        await driver.purge(name)
    finally:
        await driver.stop()
    return [
        Row("relevo postgres driver", batch_rate, drained,
            f"publish x{BATCH}; 1 subscription, prefetch {BATCH}, {CONCURRENCY} workers"),
        Row("relevo postgres driver, 1 per publish", single_rate, None,
            f"{BATCH} concurrent publishers, pool of {driver.settings.pool_size}"),
    ]


async def relevo_two_batches(count: int) -> Row:
    """The same drain with room for two claims (prefetch 200, claims of 100 rows): the
    next claim runs while the workers handle the last batch."""
    name = "driver"
    driver = await fresh_driver(name)
    try:
        await publish_batches(driver, name, count)
        drained = await drain_driver(driver, name, count, CONCURRENCY, 2 * BATCH)
    finally:
        await driver.stop()
    return Row("relevo postgres driver, prefetch 2 batches", None, drained,
               f"claims of {BATCH} (claim_batch), prefetch {2 * BATCH}, "
               f"{CONCURRENCY} workers")


# -- procrastinate: the peer -------------------------------------------------------------


async def procrastinate_peer(count: int) -> Row:
    import procrastinate

    schema = SCHEMAS["procrastinate"]
    async with await connect() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    connector = procrastinate.PsycopgConnector(
        conninfo=DSN, kwargs={"options": f"-c search_path={schema}"}
    )
    app = procrastinate.App(connector=connector)
    seen = 0

    @app.task(name="noop", queue="bench")
    async def noop(n: int) -> None:
        nonlocal seen
        seen += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            await noop.batch_defer_async(
                *({"n": n} for n in range(first, min(first + BATCH, count)))
            )
        published = rate(count, started)
        started = time.perf_counter()
        await app.run_worker_async(queues=["bench"], concurrency=CONCURRENCY, wait=False,
                                   install_signal_handlers=False, delete_jobs="always")
        drained = rate(count, started)
    assert seen == count, f"procrastinate ran {seen} of {count} jobs"
    return Row(f"procrastinate {procrastinate.__version__}", published, drained,
               f"{count:,} jobs; batch_defer x{BATCH}; worker concurrency {CONCURRENCY}")


# -- the table ---------------------------------------------------------------------------


def best(rows: list[Row]) -> Row:
    """The best publish and the best drain figure of the same measurement's rounds."""
    def top(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    first = rows[0]
    return Row(first.name, top([r.publish for r in rows]), top([r.drain for r in rows]),
               first.note)


async def drop_schemas() -> None:
    async with await connect() as conn:
        for schema in SCHEMAS.values():
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def main(count: int, skip_peers: bool) -> None:
    print(textwrap.dedent(f"""\
        PostgreSQL benchmark: {count:,} messages of {len(BODY)} bytes, batches of {BATCH}.
        Python {sys.version.split()[0]}, psycopg {psycopg.__version__}, server at {DSN}.
        Like with like: same payload, same batch size, same table shape (relevo's
        messages columns and index; relevo adds its lease rows).
        Load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores: absolute figures
        are noisy on a shared machine, compare the ratios.
        """))
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    try:
        # Interleaved rounds, best of each: other work on a shared machine slows single
        # runs at random, and the best run is the one it disturbed least.
        rounds = [(await raw_psycopg(count), *await relevo_driver(count),
                   await relevo_two_batches(count), await raw_transactional(count),
                   await raw_thin(count))
                  for _ in range(ROUNDS)]
        rows = [best([r[i] for r in rounds]) for i in range(len(rounds[0]))]
        baseline = rows[0]
        print(f"  measured the raw loop and the driver (best of {ROUNDS} rounds)", flush=True)
        for field in ("publish", "drain"):
            ratios = sorted(getattr(r[1], field) / getattr(r[0], field) for r in rounds)
            listed = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"  driver/raw {field} ratio per round: {listed} "
                  f"(median {ratios[len(ratios) // 2]:.2f})")
            if field == "drain":
                two = sorted(r[3].drain / r[0].drain for r in rounds)
                print(f"  driver (prefetch 2 batches)/raw drain ratio per round: "
                      f"{', '.join(f'{x:.2f}' for x in two)} (median {two[len(two) // 2]:.2f})")
            thin = sorted(getattr(r[1], field) / getattr(r[-1], field) for r in rounds)
            print(f"  driver/thin-table {field} ratio, median of rounds: "
                  f"{thin[len(thin) // 2]:.2f}")
        if not skip_peers:
            try:
                # procrastinate runs one job per fetch: a tenth of the volume keeps the
                # run bounded; its rates are per second all the same.
                rows.append(await asyncio.wait_for(procrastinate_peer(max(100, count // 10)),
                                                   PEER_TIMEOUT_S))
                print(f"  measured {rows[-1].name}", flush=True)
            except ImportError:
                print("(procrastinate is not installed: skipped)")
            except Exception as exc:  # a peer's failure must not hide relevo's numbers
                print(f"(procrastinate failed: {exc!r})")
        print(table(rows, baseline))
    finally:
        with contextlib.suppress(Exception):
            await drop_schemas()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.skip_peers))
