"""LISTEN on the schema's channel and wake the subscriptions of the queue named.

One connection per driver, outside the pool, does nothing but wait for notifications.
Every publish, nack and reclaim sends `NOTIFY <channel>, '<queue>'`; the listener sets
the wake-up event of each subscription on that queue. The connection opens with the
driver, and LISTENs from the driver's first subscription on: a driver that only
publishes does not read (and drop) a notification per publish statement. When the
connection drops it reconnects with backoff and wakes every subscription, since
notifications sent in between are lost (the subscriptions' slow safety poll would find
those rows too)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator

import psycopg

from relevo.drivers.postgres.boundary import transient
from relevo.drivers.postgres.queries import Queries
from relevo.drivers.postgres.settings import PostgresSettings
from relevo.errors import DriverUnavailable

log = logging.getLogger("relevo.drivers.postgres")


def backoff_s(settings: PostgresSettings) -> Iterator[float]:
    """Delays between reconnect attempts: reconnect_delay doubling up to reconnect_max_delay."""
    delay = settings.reconnect_delay
    while True:
        yield delay
        delay = min(delay * 2, settings.reconnect_max_delay)


class Listener:
    """The driver's LISTEN connection and who waits on which queue."""

    def __init__(self, settings: PostgresSettings, queries: Queries) -> None:
        self.reconnects = 0  # LISTEN connections restored after a loss (for metrics)
        self.settings = settings
        self.queries = queries
        self.waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._starting = asyncio.Lock()
        self._idle: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Open the connection, not yet listening (bounded by publish_timeout; raises
        psycopg errors): a driver that cannot reach the server fails at its start."""
        async with asyncio.timeout(self.settings.publish_timeout):
            self._idle = await psycopg.AsyncConnection.connect(self.settings.dsn,
                                                               autocommit=True)

    async def listen(self) -> None:
        """LISTEN, unless done already (bounded by publish_timeout; raises psycopg
        errors, DriverUnavailable once stopped). Returns once notifications are being
        received, so a claim made after it misses no NOTIFY of a publish committed after
        that claim."""
        async with self._starting:
            if self._task is not None:
                return
            conn, self._idle = self._idle, None
            try:
                try:
                    if conn is None:
                        raise psycopg.OperationalError("not connected")
                    async with asyncio.timeout(self.settings.publish_timeout):
                        await conn.execute(self.queries.listen)
                except Exception as exc:
                    if conn is not None:
                        await conn.close()
                    if not transient(exc):
                        raise
                    conn = await self._connect()  # dropped while idle: once more, anew
                if self._stopped:  # stop() ran meanwhile, and could not see this connection
                    raise DriverUnavailable("postgres driver stopped")
            except BaseException:
                if conn is not None:
                    await conn.close()  # cancelled or stopped on the way: not left open
                raise
            self._task = asyncio.create_task(self._run(conn), name="relevo-postgres-listen")

    async def stop(self) -> None:
        self._stopped = True
        idle, self._idle = self._idle, None
        if idle is not None:
            await idle.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)

    def register(self, queue: str, event: asyncio.Event) -> None:
        self.waiting[queue].add(event)

    def unregister(self, queue: str, event: asyncio.Event) -> None:
        events = self.waiting.get(queue)
        if events is not None:
            events.discard(event)
            if not events:
                del self.waiting[queue]

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        async with asyncio.timeout(self.settings.publish_timeout):
            conn = await psycopg.AsyncConnection.connect(self.settings.dsn, autocommit=True)
            await conn.execute(self.queries.listen)
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[tuple[object, ...]] | None) -> None:
        delays = None
        while True:
            try:
                if conn is None:
                    conn = await self._connect()
                    self._wake_all()  # what was sent while we were away is not replayed
                    if delays is not None:
                        self.reconnects += 1
                delays = None
                async for notify in conn.notifies():
                    for event in self.waiting.get(notify.payload, ()):
                        event.set()
                raise psycopg.OperationalError("the notification stream ended")
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except Exception as exc:
                if not transient(exc):
                    log.exception("postgres listener failed")
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("postgres LISTEN connection lost (%s); reconnecting in %.2fs",
                               str(exc).partition("\n")[0] or repr(exc), delay)
                if conn is not None:
                    await conn.close()
                conn = None
                await asyncio.sleep(delay)

    def _wake_all(self) -> None:
        for events in self.waiting.values():
            for event in events:
                event.set()
