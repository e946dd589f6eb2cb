"""One consumer's subscription: claim batches under a lease, push them, settle in batches.

The fetch loop claims as many rows as the subscription has credit for (one statement,
`FOR UPDATE SKIP LOCKED`, which moves them into one lease row), pushes them in order,
and when the queue has nothing ready sleeps until a NOTIFY for its queue, the next
delayed row's due time, or the slow safety poll, whichever comes first. Acks ride with
the next claim; nacks and releases are written by the flush loop, many per round trip.
`settle()` only records (it must not block). One write at a time: a lease row's
settlements are written in the order they were taken.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import uuid
from collections.abc import Awaitable, Coroutine, Sequence
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


class _Lease:
    """One claimed batch: how many of its deliveries are unsettled, and the settlements
    not written yet (acked seqs; nacked or released ones as (seq, bump, due, keep))."""

    __slots__ = ("acks", "backs", "id", "left")

    def __init__(self, lease_id: int, size: int) -> None:
        self.id = lease_id
        self.left = size
        self.acks: list[int] = []
        self.backs: list[tuple[int, int, float | None, bool]] = []


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
        self._leases: dict[int, _Lease] = {}  # by id, until their row is gone
        self._lease_of: dict[int, _Lease] = {}  # an unsettled delivery's lease, by seq
        self._unwritten: dict[int, _Lease] = {}  # leases with settlements to write
        self._writing = asyncio.Lock()
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
        ahead: asyncio.Task[tuple[Sequence[Any], float]] | None = None
        try:
            while not self._cancelled:
                if ahead is None:
                    await self.credit.wait()
                    if self._cancelled:
                        return
                    self._wake.clear()  # a NOTIFY (or an ack) during the claim sets it again
                    wanted = min(self.credit.available, self.settings.claim_batch)
                    claim: Awaitable[tuple[Sequence[Any], float]] = self._claim_alone(wanted)
                else:
                    claim, ahead = ahead, None
                    wanted = self.settings.claim_batch
                try:
                    rows, sleep_s = await claim
                    delays = None
                except BaseException as exc:
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
                    if (len(rows) == wanted
                            and self.credit.available - len(rows) >= self.settings.claim_batch):
                        # More is ready and there is room for a whole batch besides these:
                        # send its claim before handing these out, so that the database
                        # works on it meanwhile.
                        self._wake.clear()
                        ahead = self.loop.create_task(
                            self._claim_alone(self.settings.claim_batch))
                        await asyncio.sleep(0)  # lets its statement go out first
                    self._deliver(rows)
                if ahead is None and len(rows) < wanted and not self._acks_unwritten():
                    try:
                        async with asyncio.timeout(sleep_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            if ahead is not None:  # claimed rows it leaves are given back by close()
                ahead.cancel()
                await asyncio.wait({ahead})

    async def _claim_alone(self, limit: int) -> tuple[Sequence[Any], float]:
        """`_claim`, with no settlement written meanwhile."""
        async with self._writing:
            return await self._claim(limit)

    async def _claim(self, limit: int) -> tuple[Sequence[Any], float]:
        """Write the acks of leases without nacks or releases and claim up to `limit`
        rows, in one statement; and if fewer rows came than asked, how long to sleep
        before the next delayed row is due. Acks not written go back to their leases."""
        taken = [lease for lease in self._unwritten.values() if not lease.backs]
        done = [lease.id for lease in taken if not lease.left]
        partial = [(lease, len(lease.acks)) for lease in taken if lease.left]
        acks = [seq for lease, _ in partial for seq in lease.acks]
        for lease in taken:
            del self._unwritten[lease.id]
        q = self.queries
        params = self._params | {"limit": limit, "done": done, "acks": acks,
                                 "partial": [lease.id for lease, _ in partial],
                                 "lease": secrets.randbits(63)}  # see Queries.claim
        found: Any = None
        try:
            async with pooled(self.pool) as conn:
                cur = conn.cursor(binary=True)
                await cur.execute(q.claim, params)
                rows = await cur.fetchall()
                if rows:  # kept (and extended) from here on, handed out or not: should
                    # the fetch loop stop first, close() gives them back with no attempt
                    self._leases[rows[0][0]] = _Lease(rows[0][0], len(rows))
                if len(rows) < limit:
                    try:
                        await cur.execute(q.next_due, self._params)
                        found = await cur.fetchone()
                    except Exception as exc:  # the claim is in: its rows go out all the
                        if not transient(exc):  # same, and the wait is the safety poll's
                            log.exception("postgres next due time on %s failed", self.queue)
        except BaseException:
            for lease in taken:  # maybe not applied: send them again (idempotent)
                if lease.id not in self._unwritten:
                    self._unwritten[lease.id] = lease
            raise
        for lease_id in done:
            del self._leases[lease_id]
        for lease, written in partial:  # acks that came during the claim stay
            del lease.acks[:written]
        if len(rows) == limit:
            return rows, 0.0
        due_in = found[0] if found is not None else None
        sleep_s = SAFETY_POLL_S if due_in is None else min(SAFETY_POLL_S, max(0.001, due_in))
        return rows, sleep_s

    def _acks_unwritten(self) -> bool:
        """Whether the next claim has acks to write."""
        return any(not lease.backs for lease in self._unwritten.values())

    def _held(self) -> list[int]:
        """Leases the keeper extends: with handlers, settled and not yet written (an
        outage holds settlements back; their messages must not go to others), or
        claimed and not handed out (the fetch loop stopped first; close gives them back)."""
        return list(self._leases)

    def _deliver(self, rows: Sequence[Any]) -> None:
        credit, sink, lease_of = self.credit, self.sink, self._lease_of
        lease = self._leases[rows[0][0]]  # registered by the claim
        for _, seq, message_id, body, headers, attempts in rows:
            lease_of[seq] = lease
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
        lease = self._lease_of.pop(delivery.tag)
        lease.left -= 1
        self._unwritten[lease.id] = lease
        if outcome is Outcome.ACK:
            lease.acks.append(delivery.tag)
            if not lease.backs and not self._cancelled:  # written with the next claim
                self._wake.set()
                return
        elif outcome is Outcome.NACK:
            lease.backs.append((delivery.tag, 1, due, False))
        else:
            lease.backs.append((delivery.tag, 0, None, True))
        self._dirty.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._flush()
            if self._closing and not self._unwritten:
                return

    async def _flush(self) -> None:
        """Write the settlements of leases with a nack or a release (of every lease once
        the fetch loop has stopped), retrying through an outage."""
        delays = None
        while True:
            try:
                async with self._writing:
                    await self._write_settlements()
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

    async def _write_settlements(self) -> None:
        every = self._cancelled  # else the fetch loop writes leases with acks only
        taken = [lease for lease in self._unwritten.values() if every or lease.backs]
        if not taken:
            return
        settled: list[int] = []
        backs: list[tuple[int, int, float | None, bool]] = []
        written = [(len(lease.acks), len(lease.backs)) for lease in taken]
        for lease in taken:
            del self._unwritten[lease.id]
            settled += lease.acks
            settled += [back[0] for back in lease.backs]
            backs += lease.backs
        params = self._params | {"leases": [lease.id for lease in taken], "settled": settled}
        if backs:
            seqs, bumps, dues, keep = zip(*backs, strict=True)
            params |= {"back": list(seqs), "bumps": list(bumps), "dues": list(dues),
                       "keep": list(keep)}
        else:
            params |= {"back": [], "bumps": [], "dues": [], "keep": []}
        try:
            async with self.pool.connection() as conn, conn.pipeline():
                await conn.execute(self.queries.settle, params)
                if backs:
                    await conn.execute(self.queries.notify, self._params)
        except BaseException as exc:
            if isinstance(exc, Exception) and not transient(exc):
                for lease in taken:  # a bug, not an outage: no longer extended, the
                    self._leases.pop(lease.id, None)  # leases run out and come back
            else:
                for lease in taken:  # maybe not applied: send them again (idempotent)
                    if lease.id not in self._unwritten:
                        self._unwritten[lease.id] = lease
            raise
        for lease, (acked, put_back) in zip(taken, written, strict=True):
            del lease.acks[:acked]  # those settled during the write stay
            del lease.backs[:put_back]
            if not lease.left and not (lease.acks or lease.backs):
                self._leases.pop(lease.id, None)

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
        """Every lease still held by this subscription goes, its open messages back in
        place; `held` had handlers."""
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
