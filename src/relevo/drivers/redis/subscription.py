"""One consumer on one stream: read with credit, settle in batches, keep leases, reclaim.

Three tasks per subscription:

- the reader first re-reads the entries this consumer name left pending (a previous run
  with the same name), then blocks in `XREADGROUP ... >` for new ones, asking for no more
  than the free credit;
- the flusher sends queued settlements in one pipeline per round: acks as XACK + XDEL
  (the entry leaves the stream, which therefore does not grow), nacks and releases
  through `requeue.lua`, delayed nacks through `retry.lua` (the copy goes to the
  queue's sorted set of delayed messages in the same step as the original leaves);
  whatever is settled while a round is in flight joins the next.
  While Redis answers, a settlement frees its credit at once, so the reader reads the
  next entries while acks are on their way. Once a round has failed (an outage), credit
  frees only when Redis has the settlements, so however long an outage holds acks back
  the reader cannot run ahead of them;
- the keeper extends the lease of every entry this consumer still has pending, held by
  a handler or settled and not yet sent (XCLAIM JUSTID resets its idle time, so neither
  a slow handler nor an ack held back by an outage is reclaimed), gives back its own
  entries no handler holds (a read whose reply a crash cut off), and runs
  `reclaim.lua`, which gives back the entries of consumers that went silent for
  `claim_idle`; it reclaims nothing while this consumer has settlements not yet sent.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from relevo.drivers.base import DeliverySink, deliver_unreadable, watch_task
from relevo.drivers.credit import Credit
from relevo.drivers.redis.connection import backoff_s, drop_idle_connections, stop_task
from relevo.drivers.redis.fields import ATTEMPTS, BODY, HEADERS, ID, decode_headers, unreadable
from relevo.drivers.redis.scripts import RECLAIM, REQUEUE, RETRY
from relevo.drivers.redis.settings import RedisSettings
from relevo.message import Delivery, Outcome

log = logging.getLogger("relevo.drivers.redis")

NETWORK_ERRORS = (ConnectionError, TimeoutError, OSError)
RECLAIM_BATCH = 100
RECLAIM_ROUNDS = 10  # at most this many batches per keeper tick, so one tick stays short


class RedisSubscription:
    """`Subscription` of the Redis Streams driver."""

    def __init__(
        self,
        client: Redis,
        settings: RedisSettings,
        stream: str,
        group: str,
        consumer: str,
        sink: DeliverySink,
        prefetch: int,
        redeclare: Callable[[], Awaitable[None]],
        delayed: str,
        on_delayed: Callable[[float], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.client = client
        self.settings = settings
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.sink = sink
        self.prefetch = prefetch
        self.credit = prefetch
        # settle-once guard and give-back (drivers/credit.py); credit is counted apart,
        # freed only once Redis has the settlement
        self.held = Credit(prefetch)
        self.unsettled = self.held.unsettled  # by stream entry ID
        self._redeclare = redeclare
        self.delayed = delayed  # the queue's sorted set of delayed messages
        self._on_delayed = on_delayed  # wakes the driver's mover for a new due time
        self._delays: list[tuple[bytes, float]] = []  # delayed nacks: (entry ID, due)
        self.on_reconnect: Callable[[], None] | None = None  # told when reads work again
        self._acks: list[bytes] = []
        self._nacks: list[bytes] = []
        self._releases: list[bytes] = []
        self._sending: list[bytes] = []  # the settlement round in flight
        self._owed = 0  # credit of settlements held back by an outage, freed once sent
        self._outage = False  # a settlement round failed and none has gone through since
        self._history_read = False
        self._reachable = asyncio.Event()  # set when a call succeeds after an outage
        self._has_credit = asyncio.Event()
        self._has_credit.set()
        self._dirty = asyncio.Event()
        self._cancelled = False
        self._closing = False
        self._closed = False
        self._block_ms = max(1, int(settings.block * 1000))
        self._claim_ms = max(1, int(settings.claim_idle * 1000))
        self._stale_ms = int((2 * settings.claim_idle + settings.block) * 1000)
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()
        self._reader = self._task(self._read_loop(), f"relevo-redis-read:{stream}")
        self._flusher = self._task(self._flush_loop(), f"relevo-redis-ack:{stream}")
        self._keeper = self._task(self._keep_loop(), f"relevo-redis-keep:{stream}")

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.loop.create_task(work, name=name)
        watch_task(task, self.failure, log)
        return task

    # -- delivering -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        cursor: bytes | None = b"0"  # own pending entries first, then only new ones
        delays = None
        while not self._cancelled:
            if self.credit <= 0:
                self._has_credit.clear()
                await self._has_credit.wait()
                continue
            try:
                if cursor is not None:
                    entries = await self._read(cursor, block=False)
                    if not entries:
                        cursor = None
                        self._history_read = True
                        continue
                    cursor = entries[-1][0]
                    await self._deliver_history(entries)
                else:
                    entries = await self._read(b">", block=True)
                    if entries:
                        self._deliver(entries)
                if delays is not None:
                    delays = None
                    self._reachable.set()
                    if self.on_reconnect is not None:
                        self.on_reconnect()  # an outage ended
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("redis stream %s lost its group; declaring it again",
                                   self.stream)
                    await self._redeclare_quietly()
                    continue
                log.error("redis read on %s refused: %s", self.stream, exc)
                await asyncio.sleep(self.settings.reconnect_max_delay)
            except NETWORK_ERRORS as exc:
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("redis read on %s failed (%s); retrying in %.2fs",
                               self.stream, exc, delay)
                await drop_idle_connections(self.client)
                await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Wait `delay` before retrying, or less if another task reached Redis meanwhile."""
        self._reachable.clear()
        with contextlib.suppress(builtins.TimeoutError):  # not redis' TimeoutError
            async with asyncio.timeout(delay):
                await self._reachable.wait()

    async def _redeclare_quietly(self) -> None:
        try:
            await self._redeclare()
        except Exception as exc:  # the next read reports the outage and backs off
            log.warning("redis could not declare %s again: %s", self.stream, exc)
        await asyncio.sleep(self.settings.reconnect_delay)

    async def _read(self, cursor: bytes, *, block: bool) -> list[Any]:
        reply: Any = await self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: cursor},
            count=self.credit,
            block=self._block_ms if block else None,
        )
        if not reply:
            return []
        entries: list[Any] = reply[0][1]
        return entries

    def _deliver(self, entries: list[Any], deliveries: dict[bytes, int] | None = None) -> None:
        """Push entries to the sink; `deliveries` holds times-delivered for re-read ones."""
        sink, hand_out = self.sink, self.held.hand_out
        for entry_id, fields in entries:
            if not fields:  # re-read entry deleted meanwhile: nothing left to deliver
                self._acks.append(entry_id)
                self._dirty.set()
                continue
            count = deliveries.get(entry_id, 1) if deliveries else 1
            try:
                raw_attempts = fields.get(ATTEMPTS)
                delivery = Delivery(
                    self,
                    fields[ID].decode(),
                    fields[BODY],
                    decode_headers(fields.get(HEADERS)),
                    (int(raw_attempts) if raw_attempts else 0) + count,
                    entry_id,
                )
            except Exception as exc:  # a foreign or damaged entry: the consumer's failure path
                self._deliver_unreadable(entry_id, fields, count, exc)
                continue
            hand_out(delivery)
            self.credit -= 1
            try:
                sink(delivery)
            except Exception:
                log.exception("delivery sink failed on %s; the delivery stays unsettled",
                                 self.stream)

    def _deliver_unreadable(
        self, entry_id: bytes, fields: dict[bytes, bytes], count: int, error: Exception
    ) -> None:
        delivery = unreadable(self, entry_id, fields, count, error)  # the consumer logs it
        self.held.hand_out(delivery)
        self.credit -= 1
        try:
            deliver_unreadable(self.sink, delivery)
        except Exception:
            log.exception("delivery sink failed on %s; the entry stays unsettled",
                             self.stream)

    async def _deliver_history(self, entries: list[Any]) -> None:
        """Re-read entries: every earlier delivery of theirs ended unsettled, so it counts."""
        pending: Any = await self.client.xpending_range(
            self.stream, self.group, entries[0][0], entries[-1][0], len(entries), self.consumer
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        self._deliver(entries, counts)

    # -- settling ---------------------------------------------------------------------

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        if not self.held.settle(delivery):  # given back by close() already
            return
        tag = delivery.tag
        if outcome is Outcome.ACK:
            self._acks.append(tag)
        elif outcome is Outcome.NACK:
            if due is None:
                self._nacks.append(tag)
            else:
                self._delays.append((tag, due))
        else:
            self._releases.append(tag)
        if self._outage:
            self._owed += 1
        else:
            self._free(1)
        self._dirty.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._flush()
            if self._closing and not self._queued():
                return

    def _queued(self) -> bool:
        return bool(self._acks or self._nacks or self._releases or self._delays)

    async def _flush(self) -> None:
        acks, nacks, releases, delays_ = self._acks, self._nacks, self._releases, self._delays
        if not (acks or nacks or releases or delays_):
            return
        self._acks, self._nacks, self._releases, self._delays = [], [], [], []
        owed, self._owed = self._owed, 0
        self._sending = [*acks, *nacks, *releases, *(tag for tag, _ in delays_)]
        retry_args: list[Any] = [self.group, self.consumer]
        for tag, due in delays_:
            retry_args += (tag, repr(due))
        delays = None
        while True:
            pipe = self.client.pipeline(transaction=False)
            if acks:
                pipe.xack(self.stream, self.group, *acks)
                pipe.xdel(self.stream, *acks)
            calls = [(bump, ids) for bump, ids in ((1, nacks), (0, releases)) if ids]
            for bump, ids in calls:
                REQUEUE.queue(pipe, [self.stream], [self.group, self.consumer, bump, *ids])
            if delays_:
                RETRY.queue(pipe, [self.stream, self.delayed], retry_args)
            try:
                results = await pipe.execute(raise_on_error=False)
                break
            except NETWORK_ERRORS as exc:
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("redis settle on %s failed (%s); retrying in %.2fs",
                               self.stream, exc, delay)
                self._outage = True
                await drop_idle_connections(self.client)
                await self._pause(delay)
        if delays is not None:
            self._reachable.set()
        start = 2 if acks else 0
        for (bump, ids), result in zip(calls, results[start : start + len(calls)], strict=True):
            if isinstance(result, NoScriptError):
                await self._requeue(ids, bump)
        if delays_:
            if isinstance(results[-1], NoScriptError):
                await RETRY.run(self.client, [self.stream, self.delayed], retry_args)
            self._on_delayed(min(due for _, due in delays_))
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, NoScriptError):
                log.warning("redis settle on %s: %s", self.stream, result)
        self._sending = []
        self._outage = False
        self._free(owed)  # what this round sent; owed credit settled since waits its round

    def _free(self, credit: int) -> None:
        """Settlements Redis has: the reader may take as many new entries."""
        if credit:
            self.credit += credit
            if self.credit == credit:
                self._has_credit.set()

    async def _requeue(self, ids: list[bytes], bump: int) -> int:
        """Give entries this consumer still owns back to the stream, `bump` attempts more."""
        moved = 0
        for start in range(0, len(ids), 500):
            moved += await REQUEUE.run(
                self.client, [self.stream], [self.group, self.consumer, bump,
                                             *ids[start : start + 500]]
            )
        return moved

    # -- leases and reclaiming --------------------------------------------------------

    async def _keep_loop(self) -> None:
        period = self.settings.claim_idle / 3
        failed = False
        while not self._closed:
            try:
                # Leases first: after an outage, what this consumer holds is renewed
                # before anything is reclaimed, here or by another consumer's keeper.
                await self._renew_leases()
                if failed:
                    failed = False
                    self._reachable.set()  # the flusher sends held-back settlements now
                if not self._unsent():
                    await self._give_back_orphans()
                    await self._reclaim()
            except (ResponseError, *NETWORK_ERRORS) as exc:  # the reader reports outages
                failed = True
                log.debug("redis lease/reclaim on %s skipped: %s", self.stream, exc)
            await asyncio.sleep(period)

    def _unsent(self) -> bool:
        return self._queued() or bool(self._sending)

    async def _renew_leases(self) -> None:
        """Reset the idle time of every entry still pending for this consumer."""
        pending: list[Any] = [
            *self.unsettled, *self._acks, *self._nacks, *self._releases, *self._sending,
            *(tag for tag, _ in self._delays),
        ]
        if pending:
            await self.client.xclaim(
                self.stream, self.group, self.consumer, 0, pending, justid=True
            )

    async def _give_back_orphans(self) -> None:
        """Entries pending for this consumer that no handler holds: a read whose reply a
        dropped connection cut off. They never reached a handler: attempts unchanged."""
        if not self._history_read:  # the reader is still re-reading them itself
            return
        rows: Any = await self.client.xpending_range(
            self.stream, self.group, "-", "+", RECLAIM_BATCH, self.consumer,
            idle=self._claim_ms,
        )
        orphans = [row["message_id"] for row in rows if row["message_id"] not in self.unsettled]
        if orphans and not self._unsent():
            moved = await self._requeue(orphans, 0)
            if moved:
                log.info("redis gave back %d entries on %s whose read a lost connection "
                            "cut off", moved, self.stream)

    async def _reclaim(self) -> None:
        for _ in range(RECLAIM_ROUNDS):
            moved = await RECLAIM.run(
                self.client,
                [self.stream],
                [self.group, self.consumer, self._claim_ms, RECLAIM_BATCH, self._stale_ms],
            )
            if moved:
                log.info("redis reclaimed %d entries of silent consumers on %s",
                            moved, self.stream)
            if moved < RECLAIM_BATCH:
                return

    # -- stopping ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def cancel(self) -> None:
        self._cancelled = True
        await stop_task(self._reader)

    async def close(self) -> None:
        """Stop reading, flush settlements, give back the rest at once, leave the group."""
        if self._closed:
            return
        self._closed = True
        await self.cancel()
        held = self.held.take_back()
        await asyncio.sleep(0)  # settlements sent from worker threads land first
        self._closing = True
        self._dirty.set()
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await self._flusher
            await self._give_back([d.tag for d in held])
        except Exception as exc:  # Redis down or slow: never let close() fail or hang
            log.warning("redis close on %s could not give entries back (%r); they "
                           "return after claim_idle", self.stream, exc)
        finally:
            await stop_task(self._flusher)
            await stop_task(self._keeper)

    async def _give_back(self, held: list[bytes]) -> None:
        if held:  # a handler had them: each counts as a failed attempt
            await self._requeue(held, 1)
        # Entries read but never pushed (a read cut short by cancel) did not reach a handler.
        rest: Any = await self.client.xpending_range(
            self.stream, self.group, "-", "+", 10_000, self.consumer
        )
        if rest:
            await self._requeue([row["message_id"] for row in rest], 0)
        await self.client.xgroup_delconsumer(self.stream, self.group, self.consumer)

