"""The keeper of one subscription's leases, and the reclaimer of dead consumers' rows.

Every `claim_idle / 3` it extends every lease its subscription holds (so a handler may
run for longer than claim_idle without its message going to someone else), marks its
consumer as alive, and hands back the messages of leases that ran out: their holder was
killed or stalled past claim_idle. Those return in place with one attempt more (a
handler had them and never settled) and a NOTIFY wakes the queue's consumers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from psycopg_pool import AsyncConnectionPool

from relevo.drivers.postgres.boundary import transient
from relevo.drivers.postgres.queries import Queries
from relevo.drivers.postgres.settings import PostgresSettings

log = logging.getLogger("relevo.drivers.postgres")

RECLAIM_BATCH = 100
"""Expired leases handed back per statement; a tick repeats until none are left."""


class LeaseKeeper:
    """Extends `held()` leases, heartbeats the consumer, reclaims expired leases."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queries: Queries,
        settings: PostgresSettings,
        queue: str,
        token: str,
        held: Callable[[], Collection[int]],
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.settings = settings
        self.queue = queue
        self.token = token
        self.held = held
        self.stale_s = 2 * settings.claim_idle

    async def run(self) -> None:
        period = self.settings.claim_idle / 3
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the fetch loop reports outages; try again next tick
                level = logging.DEBUG if transient(exc) else logging.WARNING
                log.log(level, "postgres lease keeping on %s skipped: %s", self.queue, exc)
            await asyncio.sleep(period)

    async def tick(self) -> None:
        q = self.queries
        params = {"queue": self.queue, "token": self.token, "lease_s": self.settings.claim_idle,
                  "stale_s": self.stale_s, "limit": RECLAIM_BATCH, "channel": q.channel}
        async with self.pool.connection() as conn:
            leases = list(self.held())
            async with conn.pipeline():
                await conn.execute(q.heartbeat, params)
                if leases:
                    await conn.execute(q.extend, params | {"leases": leases})
                await conn.execute(q.forget_stale, params)
            moved = 0
            while True:
                found = await (await conn.execute(q.reclaim, params)).fetchone()
                expired, put_back = found if found is not None else (0, 0)
                moved += put_back
                if expired < RECLAIM_BATCH:
                    break
            if moved:
                await conn.execute(q.notify, params)
                log.info("postgres reclaimed %d expired messages on %s", moved, self.queue)
