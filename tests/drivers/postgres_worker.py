"""A worker process for test_postgres: handles messages until it is killed.

    python -m tests.drivers.postgres_worker DSN SCHEMA QUEUE PREFETCH CLAIM_IDLE_S

Each delivery is "handled" by inserting its ID into <SCHEMA>.handled, then acked, the
order a real handler keeps. Prints "ready" once attached, so the test can SIGKILL it
mid-stream with deliveries claimed, handled and not yet acked.
"""

from __future__ import annotations

import asyncio
import sys

import psycopg

from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.settings import PostgresSettings
from relevo.message import Delivery


async def main(dsn: str, schema: str, queue: str, prefetch: int, claim_idle_s: float) -> None:
    settings = PostgresSettings.model_validate(
        {"dsn": dsn, "schema": schema, "claim_idle": claim_idle_s}
    )
    driver = PostgresDriver(settings)
    await driver.start()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    pending: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle() -> None:
        while True:
            delivery = await pending.get()
            await conn.execute(f'INSERT INTO "{schema}".handled (id) VALUES (%s)',
                               (delivery.id,))
            delivery.ack()

    worker = asyncio.create_task(handle())
    await driver.attach(queue, pending.put_nowait, prefetch, {})
    print("ready", flush=True)
    await worker


if __name__ == "__main__":
    dsn, schema, queue, prefetch, claim_idle_s = sys.argv[1:6]
    asyncio.run(main(dsn, schema, queue, int(prefetch), float(claim_idle_s)))
