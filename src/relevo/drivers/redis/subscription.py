"""One consumer on one stream: read with credit, hand out, settle in rounds, keep leases.

Three tasks per subscription:

- the reader (here) first re-reads the entries this consumer name left pending (a
  previous run with the same name), then blocks in `XREADGROUP ... >` for new ones,
  asking for no more than the free credit (`drivers/credit.py`);
- the flusher (`settlements.py`) sends queued settlements in one pipeline per round;
  during an outage a settlement's credit is held back until Redis has it;
- the lease keeper (`keeper.py`) renews the leases of what this consumer holds or has
  settled and not yet sent, and gives back what silent consumers left.

They share one `Outage`: when one task reaches Redis again, the others stop waiting.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relevo.drivers.base import DeliverySink, deliver_unreadable, watch_task
from relevo.drivers.credit import Credit
from relevo.drivers.redis.connection import (
    NETWORK_ERRORS,
    Outage,
    backoff_s,
    drop_idle_connections,
    stop_task,
)
from relevo.drivers.redis.fields import ATTEMPTS, BODY, HEADERS, ID, decode_headers, unreadable
from relevo.drivers.redis.keeper import LeaseKeeper
from relevo.drivers.redis.member import Member
from relevo.drivers.redis.settings import RedisSettings
from relevo.drivers.redis.settlements import Flusher, Settlements
from relevo.message import Delivery, Outcome

log = logging.getLogger("relevo.drivers.redis")


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
        self.member = member = Member(client, settings, stream, group, consumer)
        self.stream = stream
        self.sink = sink
        # unsettled deliveries by stream entry ID, their credit, the settle-once guard
        self.credit = Credit(prefetch)
        self.settlements = Settlements(self.credit)
        self.outage = Outage()  # shared by the three tasks
        self._redeclare = redeclare
        self.on_reconnect: Callable[[], None] | None = None  # told when reads work again
        self._cancelled = False
        self._closed = False
        self._block_ms = max(1, int(settings.block * 1000))
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()
        self.flusher = Flusher(member, delayed, on_delayed, self.settlements, self.outage)
        self.keeper = LeaseKeeper(member, self.credit.unsettled, self.settlements, self.outage)
        self._reader = self._task(self._read_loop(), f"relevo-redis-read:{stream}")
        self._flusher = self._task(self.flusher.run(), f"relevo-redis-ack:{stream}")
        self._keeper = self._task(self.keeper.run(), f"relevo-redis-keep:{stream}")

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.loop.create_task(work, name=name)
        watch_task(task, self.failure, log)
        return task

    # -- delivering -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        cursor: bytes | None = b"0"  # own pending entries first, then only new ones
        delays = None
        credit = self.credit
        while not self._cancelled:
            if credit.available <= 0:
                await credit.wait()
                continue
            try:
                if cursor is not None:
                    entries = await self._read(cursor, block=False)
                    if not entries:
                        cursor = None
                        self.keeper.history_read = True
                        continue
                    cursor = entries[-1][0]
                    await self._deliver_history(entries)
                else:
                    entries = await self._read(b">", block=True)
                    if entries:
                        self._deliver(entries)
                if delays is not None:
                    delays = None
                    self.outage.ended()
                    if self.on_reconnect is not None:
                        self.on_reconnect()  # an outage ended
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("redis stream %s lost its group; declaring it again",
                                   self.stream)
                    await self._redeclare_quietly()
                    continue
                log.error("redis read on %s refused: %s", self.stream, exc)
                await asyncio.sleep(self.member.settings.reconnect_max_delay)
            except NETWORK_ERRORS as exc:
                if self._cancelled:  # a cancellation the client turned into an error
                    return
                self.outage.failed()
                delays = delays or backoff_s(self.member.settings)
                delay = next(delays)
                log.warning("redis read on %s failed (%s); retrying in %.2fs",
                               self.stream, exc, delay)
                await drop_idle_connections(self.member.client)
                await self.outage.pause(delay)

    async def _redeclare_quietly(self) -> None:
        try:
            await self._redeclare()
        except Exception as exc:  # the next read reports the outage and backs off
            log.warning("redis could not declare %s again: %s", self.stream, exc)
        await asyncio.sleep(self.member.settings.reconnect_delay)

    async def _read(self, cursor: bytes, *, block: bool) -> list[Any]:
        m = self.member
        reply: Any = await m.client.xreadgroup(
            m.group,
            m.consumer,
            {m.stream: cursor},
            count=self.credit.available,
            block=self._block_ms if block else None,
        )
        if not reply:
            return []
        entries: list[Any] = reply[0][1]
        return entries

    def _deliver(self, entries: list[Any], deliveries: dict[bytes, int] | None = None) -> None:
        """Push entries to the sink; `deliveries` holds times-delivered for re-read ones."""
        sink, hand_out = self.sink, self.credit.hand_out
        for entry_id, fields in entries:
            if not fields:  # re-read entry deleted meanwhile: nothing left to deliver
                self.settlements.drop(entry_id)
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
            try:
                sink(delivery)
            except Exception:
                log.exception("delivery sink failed on %s; the delivery stays unsettled",
                                 self.stream)

    def _deliver_unreadable(
        self, entry_id: bytes, fields: dict[bytes, bytes], count: int, error: Exception
    ) -> None:
        delivery = unreadable(self, entry_id, fields, count, error)  # the consumer logs it
        self.credit.hand_out(delivery)
        try:
            deliver_unreadable(self.sink, delivery)
        except Exception:
            log.exception("delivery sink failed on %s; the entry stays unsettled",
                             self.stream)

    async def _deliver_history(self, entries: list[Any]) -> None:
        """Re-read entries: every earlier delivery of theirs ended unsettled, so it counts."""
        m = self.member
        pending: Any = await m.client.xpending_range(
            m.stream, m.group, entries[0][0], entries[-1][0], len(entries), m.consumer
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        self._deliver(entries, counts)

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        self.settlements.add(delivery, outcome, due)

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
        self.keeper.stopped = True
        await self.cancel()
        held = self.credit.take_back()
        await asyncio.sleep(0)  # settlements sent from worker threads land first
        self.flusher.finish()
        try:
            async with asyncio.timeout(self.member.settings.publish_timeout):
                await self._flusher
            await self._give_back([d.tag for d in held])
        except Exception as exc:  # Redis down or slow: never let close() fail or hang
            log.warning("redis close on %s could not give entries back (%r); they "
                           "return after claim_idle", self.stream, exc)
        finally:
            await stop_task(self._flusher)
            await stop_task(self._keeper)

    async def _give_back(self, held: list[bytes]) -> None:
        m = self.member
        if held:  # a handler had them: each counts as a failed attempt
            await m.requeue(held, 1)
        # Entries read but never pushed (a read cut short by cancel) did not reach a handler.
        rest: Any = await m.client.xpending_range(m.stream, m.group, "-", "+", 10_000, m.consumer)
        if rest:
            await m.requeue([row["message_id"] for row in rest], 0)
        await m.client.xgroup_delconsumer(m.stream, m.group, m.consumer)
