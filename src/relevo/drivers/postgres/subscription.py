"""One consumer's subscription: claim rows with a lease, push them, settle in batches.

The fetch loop claims as many rows as the subscription has credit for (one statement,
`FOR UPDATE SKIP LOCKED`), pushes them in order, and when the queue has nothing ready
sleeps until a NOTIFY for its queue, the next delayed row's due time, or the slow
safety poll, whichever comes first. Settlements are queued by `settle()` (which must
not block) and written by the flush loop, many per round trip.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

import msgpack
import psycopg
from psycopg_pool import AsyncConnectionPool

from relevo.drivers.base import DeliverySink, deliver_unreadable, watch_task
from relevo.drivers.credit import Credit
from relevo.drivers.postgres.boundary import on_connection, pooled, transient
from relevo.drivers.postgres.keeper import LeaseKeeper
from relevo.drivers.postgres.listener import Listener, backoff_s
from relevo.drivers.postgres.queries import Queries
from relevo.drivers.postgres.settings import PostgresSettings
from relevo.message import Delivery, Outcome, Unreadable

log = logging.getLogger("relevo.drivers.postgres")

SAFETY_POLL_S = 5.0
"""Longest sleep without a NOTIFY: a lost notification delays a message by this much."""


class PostgresSubscription:
    """A `Subscription` on one queue of the PostgreSQL driver."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queries: Queries,
        settings: PostgresSettings,
        listener: Listener,
        queue: str,
        sink: DeliverySink,
        prefetch: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.pool = pool
        self.queries = queries
        self.settings = settings
        self.listener = listener
        self.queue = queue
        self.sink = sink
        self.token = uuid.uuid4().hex
        self.credit = Credit(prefetch)
        self._acks: list[int] = []
        self._nacks: list[tuple[int, float | None]] = []
        self._releases: list[int] = []
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._cancelled = False
        self._closing = False
        self._closed = False
        self._params: dict[str, Any] = {
            "queue": queue, "token": self.token, "lease_s": settings.claim_idle,
            "channel": queries.channel,
        }
        listener.register(queue, self._wake)
        keeper = LeaseKeeper(pool, queries, settings, queue, self.token, self._held)
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()
        self._fetcher = self._task(self._fetch_loop(), f"relevo-pg-fetch:{queue}")
        self._flusher = self._task(self._flush_loop(), f"relevo-pg-ack:{queue}")
        self._keeper = self._task(keeper.run(), f"relevo-pg-keep:{queue}")

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.loop.create_task(work, name=name)
        watch_task(task, self.failure, log)
        return task

    # -- delivering -------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        delays = None
        while not self._cancelled:
            await self.credit.wait()
            if self._cancelled:
                return
            self._wake.clear()  # a NOTIFY (or an ack) arriving during the claim sets it again
            wanted = self.credit.available
            acks, self._acks = self._acks, []
            try:
                rows, sleep_s = await self._claim(wanted, acks)
                delays = None
            except BaseException as exc:
                self._acks.extend(acks)  # maybe not applied: send them again (idempotent)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if not transient(exc):
                    log.exception("postgres claim on %s failed", self.queue)
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("postgres claim on %s failed (%s); retrying in %.2fs",
                               self.queue, exc, delay)
                await asyncio.sleep(delay)
                continue
            if rows:
                self._deliver(rows)
            if len(rows) < wanted and not self._acks:
                try:
                    async with asyncio.timeout(sleep_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _claim(self, limit: int, acks: list[int]) -> tuple[Sequence[Any], float]:
        """Ack `acks` and claim up to `limit` rows in one statement; and if fewer rows came
        than asked, how long to sleep before the next delayed row is due."""
        q = self.queries
        async with pooled(self.pool) as conn:
            cur = conn.cursor(binary=True)
            await cur.execute(q.claim, self._params | {"limit": limit, "acks": acks})
            rows = await cur.fetchall()
            if len(rows) == limit:
                return rows, 0.0
            await cur.execute(q.next_due, self._params)
            found = await cur.fetchone()
        due_in = found[0] if found is not None else None
        sleep_s = SAFETY_POLL_S if due_in is None else min(SAFETY_POLL_S, max(0.001, due_in))
        return rows, sleep_s

    def _held(self) -> list[int]:
        """Rows whose lease the keeper extends: with handlers, or settled and not yet
        written (an outage holds settlements back; their rows must not go to others)."""
        held: list[int] = list(self.credit.unsettled)  # type: ignore[arg-type]  # row seqs
        return held + self._acks + [seq for seq, _ in self._nacks] + self._releases

    def _deliver(self, rows: Sequence[Any]) -> None:
        credit, sink = self.credit, self.sink
        for seq, message_id, body, headers, attempts in rows:
            try:
                delivery = Delivery(
                    self, message_id, body, msgpack.unpackb(headers) if headers else None,
                    attempts + 1, seq,
                )
            except Exception as exc:  # a row another program wrote: the failure path
                delivery = Unreadable(self, str(message_id or seq), bytes(body or b""),
                                      attempts + 1, seq, f"unreadable headers ({exc!r})")
                credit.hand_out(delivery)
                deliver_unreadable(sink, delivery)
                continue
            credit.hand_out(delivery)
            try:
                sink(delivery)
            except Exception:
                log.exception("delivery sink failed on %s; the delivery stays unsettled",
                                 self.queue)

    # -- settling ---------------------------------------------------------------------

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        if not self.credit.settle(delivery):  # given back by close() already
            return
        if outcome is Outcome.ACK:
            self._acks.append(delivery.tag)
            if not self._cancelled:  # the fetch loop sends it with its next claim
                self._wake.set()
                return
        elif outcome is Outcome.NACK:
            self._nacks.append((delivery.tag, due))
        else:
            self._releases.append(delivery.tag)
        self._dirty.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._flush()
            if self._closing and not (self._acks or self._nacks or self._releases):
                return

    async def _flush(self) -> None:
        acks: list[int] = []
        if self._cancelled:  # else the fetch loop sends acks with its claims
            acks, self._acks = self._acks, []
        nacks, releases = self._nacks, self._releases
        if not (acks or nacks or releases):
            return
        self._nacks, self._releases = [], []
        q, params = self.queries, self._params
        delays = None
        while True:
            try:
                async with self.pool.connection() as conn, conn.pipeline():
                    if acks:
                        await conn.execute(q.ack, params | {"seqs": acks})
                    if nacks:
                        seqs, dues = zip(*nacks, strict=True)
                        await conn.execute(
                            q.nack, params | {"seqs": list(seqs), "dues": list(dues), "bump": 1}
                        )
                    if releases:
                        await conn.execute(q.release, params | {"seqs": releases})
                    if nacks or releases:
                        await conn.execute(q.notify, params)
                return
            except Exception as exc:
                if not transient(exc):  # a bug, not an outage: the leases bring them back
                    log.exception("postgres settle on %s failed", self.queue)
                    return
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("postgres settle on %s failed (%s); retrying in %.2fs",
                               self.queue, exc, delay)
                await asyncio.sleep(delay)

    # -- stopping ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def cancel(self) -> None:
        self._cancelled = True
        self.listener.unregister(self.queue, self._wake)
        await _stop(self._fetcher)
        self._dirty.set()  # acks the fetch loop would have sent with its next claim

    async def close(self) -> None:
        """Stop fetching, flush settlements, give back the rest at once, leave."""
        if self._closed:
            return
        self._closed = True
        await self.cancel()
        await asyncio.sleep(0)  # settlements sent from worker threads land first
        held = [d.tag for d in self.credit.take_back()]
        await _stop(self._keeper)
        self._closing = True
        self._dirty.set()
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await self._flusher
                await self._give_back(held)
        except Exception as exc:  # never let close() fail or hang
            log.warning("postgres close on %s could not give messages back (%r); they "
                           "return after claim_idle", self.queue, exc)
        finally:
            await _stop(self._flusher)

    async def _give_back(self, held: list[int]) -> None:
        """Everything still leased to this subscription returns; `held` had handlers."""
        q, params = self.queries, self._params | {"held": held}

        async def give_back(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.pipeline():
                await conn.execute(q.give_back, params)
                await conn.execute(q.leave, params)
                await conn.execute(q.notify, params)

        await on_connection(self.pool, f"close on {self.queue!r}",
                            self.settings.publish_timeout, give_back)


async def _stop(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    await asyncio.wait({task}, timeout=2.0)
