"""`queue.driver.postgres`: queues as rows of one table, claimed with SKIP LOCKED.

- start opens a connection pool and a LISTEN connection, and creates the schema if it
  is missing (schema.sql, under an advisory lock), recording its version; the LISTEN
  itself waits for the first subscription;
- publish is one INSERT ... SELECT FROM unnest(...) per batch with a NOTIFY at commit,
  through the pool or, for a transactional publish, through the caller's connection;
- consume, settle and leases live in subscription.py and keeper.py.

Every psycopg exception is translated into `relevo.errors` in boundary.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgpack
import psycopg
from psycopg_pool import AsyncConnectionPool

from relevo.drivers.base import Capabilities, DeliverySink, QueueSpec, QueueStats
from relevo.drivers.postgres.boundary import bounded, on_connection, translated
from relevo.drivers.postgres.listener import Listener
from relevo.drivers.postgres.publisher import Publisher, Rows
from relevo.drivers.postgres.queries import SCHEMA_VERSION, Queries
from relevo.drivers.postgres.settings import (
    PostgresConsumerOptions,
    PostgresQueueOptions,
    PostgresSettings,
)
from relevo.drivers.postgres.subscription import PostgresSubscription
from relevo.drivers.settings import Options, typed_options
from relevo.errors import DriverUnavailable, PublishError, QueueFull, QueueNotFound
from relevo.message import Envelope

T = TypeVar("T")


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Each pooled connection plans a prepared statement once. Left to choose, the
    server planned the claim again at every execution (about a fifth of its time): a
    LIMIT and an array given as parameters make its generic plan look costlier than it
    is. Every statement the driver sends reads through the queue's indexes either way."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")


class PostgresDriver:
    """`queue.driver.postgres`."""

    capabilities = Capabilities(durable=True, exact_in_flight=True,
                                delays=True, bounded=True)

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self.settings = settings or PostgresSettings()
        self.queries = Queries(self.settings.schema_name)
        self._pool: AsyncConnectionPool | None = None
        self._listener: Listener | None = None
        self._publisher: Publisher | None = None
        self._subscriptions: set[PostgresSubscription] = set()
        self._bounds: dict[str, int] = {}  # max_length of the bounded queues declared here

    # -- lifecycle ----------------------------------------------------------------------


    @property
    def reconnects(self) -> int:
        """LISTEN connections restored after a loss (for metrics)."""
        return self._listener.reconnects if self._listener is not None else 0

    async def start(self) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.settings.dsn, min_size=1, max_size=self.settings.pool_size, open=False,
            kwargs={"autocommit": True}, name="relevo", configure=_configure,
        )
        listener = Listener(self.settings, self.queries)
        try:
            async with bounded("connect", self.settings.publish_timeout):
                await pool.open(wait=True, timeout=self.settings.publish_timeout)
                await self._create_schema(pool)
                await listener.start()
        except BaseException:
            await listener.stop()
            await pool.close()
            raise
        self._pool, self._listener = pool, listener
        self._publisher = Publisher(pool, self.queries, self.settings)

    async def _create_schema(self, pool: AsyncConnectionPool) -> None:
        q = self.queries
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(q.lock, {"name": q.channel})
            await conn.execute(q.ddl)
            found = await (await conn.execute(q.version)).fetchone()
            version = found[0] if found is not None else None
            if version == 1:
                await conn.execute(q.upgrade_from_1)
            if version is None or version < SCHEMA_VERSION:
                await conn.execute(q.record_version, {"version": SCHEMA_VERSION})
            elif version > SCHEMA_VERSION:
                raise DriverUnavailable(
                    f"postgres schema {q.schema!r} is at version {version}; this relevo "
                    f"knows versions up to {SCHEMA_VERSION}: upgrade relevo"
                )
            if self.settings.index_message_ids:  # after an upgrade, which may drop one
                await conn.execute(q.index_ids)

    async def stop(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- queues -------------------------------------------------------------------------

    async def declare(self, spec: QueueSpec) -> None:
        options = typed_options(PostgresQueueOptions, spec.options)
        await self._count(f"declare {spec.name!r}", self.queries.declare,
                          {"queue": spec.name, "max_length": options.max_length})
        if options.max_length is None:
            self._bounds.pop(spec.name, None)
        else:
            self._bounds[spec.name] = options.max_length

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], due: float | None = None
    ) -> None:
        if not envelopes:
            return
        if self._publisher is None:
            raise DriverUnavailable("postgres driver is not running")
        if queue in self._bounds and (due is None or due <= time.time()):
            await self._publish_bounded(queue, envelopes)  # delayed ones are not bounded
        else:
            await self._publisher.publish(queue, envelopes, due)

    async def _publish_bounded(self, queue: str, envelopes: Sequence[Envelope]) -> None:
        """Store as many as the queue has room for, wait for room for the rest (polling:
        acks send no NOTIFY), and give up with QueueFull at the publish timeout."""
        Rows().add(queue, envelopes, None)  # an unencodable header fails before any insert
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_timeout
        rest, pause = list(envelopes), 0.01
        q = self.queries

        async def insert_what_fits(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                found = await (await conn.execute(q.room, {"queue": queue})).fetchone()
                if found is None:
                    raise QueueNotFound(f"postgres queue {queue!r} is not declared")
                fits = len(rest) if found[0] is None else max(0, min(found[0], len(rest)))
                if fits:
                    rows = Rows()
                    rows.add(queue, rest[:fits], None)
                    await conn.execute(q.publish, rows.params(queue, q))
                return fits

        while rest:
            stored = await on_connection(self._db(), f"publish to {queue!r}",
                                         max(0.001, deadline - loop.time()), insert_what_fits)
            rest = rest[stored:]
            if rest:
                if loop.time() + pause >= deadline:
                    raise QueueFull(
                        f"postgres queue {queue!r} stayed full ({self._bounds[queue]} "
                        f"messages) for the publish timeout of {self.settings.publish_timeout}s"
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)

    async def publish_in(
        self, connection: Any, queue: str, envelopes: Sequence[Envelope],
        due: float | None = None,
    ) -> None:
        """Insert through the caller's psycopg AsyncConnection, inside its transaction:
        the messages exist if and only if that transaction commits."""
        if not isinstance(connection, psycopg.AsyncConnection):
            raise PublishError(
                "connection= takes a psycopg (3) AsyncConnection, "
                f"got {type(connection).__name__}"
            )
        if not envelopes:
            return
        rows = Rows()
        rows.add(queue, envelopes, due)
        bounded = queue in self._bounds and (due is None or due <= time.time())
        with translated(f"publish to {queue!r}", callers_transaction=True):
            async with asyncio.timeout(self.settings.publish_timeout):
                if bounded:  # no waiting inside the caller's transaction: full is full
                    await self._check_room(connection, queue, len(envelopes))
                cur = await connection.execute(self.queries.publish,
                                               rows.params(queue, self.queries))
        if cur.rowcount == 0:
            raise QueueNotFound(f"postgres queue {queue!r} is not declared")

    async def _check_room(
        self, connection: psycopg.AsyncConnection[Any], queue: str, count: int
    ) -> None:
        found = await (await connection.execute(self.queries.room, {"queue": queue})).fetchone()
        if found is None:
            raise QueueNotFound(f"postgres queue {queue!r} is not declared")
        if found[0] is not None and found[0] < count:
            raise QueueFull(f"postgres queue {queue!r} has room for {max(0, found[0])} "
                            f"messages, not {count}")

    async def attach(
        self, queue: str, sink: DeliverySink, prefetch: int, options: Options
    ) -> PostgresSubscription:
        typed_options(PostgresConsumerOptions, options)
        await self._require(queue)
        listener = self._listener
        if listener is None:
            raise DriverUnavailable("postgres driver is not running")
        async with bounded(f"listen for {queue!r}", self.settings.publish_timeout):
            await listener.listen()
        sub = PostgresSubscription(
            self._db(), self.queries, self.settings, listener, queue, sink, prefetch
        )
        try:  # counted in info() at once, not at the keeper's first tick
            await self._count(f"attach to {queue!r}", self.queries.heartbeat,
                              {"queue": queue, "token": sub.token})
        except BaseException:
            await sub.close()
            raise
        self._subscriptions = {s for s in self._subscriptions if not s.closed}
        self._subscriptions.add(sub)
        return sub

    async def info(self, queue: str) -> QueueStats:
        params = {"queue": queue, "stale_s": 2 * self.settings.claim_idle}
        row = await self._fetch_one(f"info on {queue!r}", self.queries.info, params)
        if row is None:
            raise QueueNotFound(f"postgres queue {queue!r} is not declared")
        ready, in_flight, delayed, next_due, consumers = row
        return QueueStats(ready, in_flight, consumers, delayed, next_due)

    async def peek(self, queue: str, limit: int, after: str | None = None) -> list[Envelope]:
        await self._require(queue)
        params = {"queue": queue, "limit": limit, "after": after}

        async def fetch(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = conn.cursor(binary=True)
            await cur.execute(self.queries.peek, params)
            return await cur.fetchall()

        rows = await self._run(f"peek at {queue!r}", fetch)
        return [
            Envelope(message_id, body, msgpack.unpackb(headers) if headers else None, attempts)
            for message_id, body, headers, attempts in rows
        ]

    async def remove(self, queue: str, ids: Sequence[str]) -> int:
        await self._require(queue)
        return await self._count(f"remove from {queue!r}", self.queries.remove,
                                 {"queue": queue, "ids": list(ids)})

    async def purge(self, queue: str) -> int:
        await self._require(queue)
        return await self._count(f"purge {queue!r}", self.queries.purge, {"queue": queue})

    # -- helpers ------------------------------------------------------------------------

    async def _run(
        self, what: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        return await on_connection(self._db(), what, self.settings.publish_timeout, work)

    def _db(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise DriverUnavailable("postgres driver is not running")
        return self._pool

    async def _require(self, queue: str) -> None:
        row = await self._fetch_one(f"find {queue!r}", self.queries.exists, {"queue": queue})
        if row is None:
            raise QueueNotFound(f"postgres queue {queue!r} is not declared")

    async def _fetch_one(self, what: str, query: str, params: dict[str, Any]) -> Any:
        async def fetch(conn: psycopg.AsyncConnection[Any]) -> Any:
            return await (await conn.execute(query, params)).fetchone()

        return await self._run(what, fetch)

    async def _count(self, what: str, query: str, params: dict[str, Any]) -> int:
        async def count(conn: psycopg.AsyncConnection[Any]) -> int:
            return (await conn.execute(query, params)).rowcount

        return await self._run(what, count)
