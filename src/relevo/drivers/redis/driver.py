"""`queue.driver.redis`: one Redis stream per queue, one consumer group per stream.

A stream is a log, not a queue; the driver adds what a queue needs:

- publish is XADD (NOMKSTREAM, so an undeclared queue is QueueNotFound), coalesced into
  pipelines (publisher.py); `bounded.lua` when the queue sets `max_length`;
- consume is XREADGROUP sized to free credit (subscription.py); settlements go in
  rounds (settlements.py): ack is XACK + XDEL, so acked entries leave the stream; nack
  and release re-add the entry atomically (requeue.lua);
- dead consumers' entries come back through reclaim.lua, live handlers keep theirs with
  lease extension (keeper.py);
- a queue this driver declared is declared again if Redis comes back without it;
- delayed messages (publish with `due`, nack with `due`) wait in a sorted set per queue
  (`<stream>:delayed`, scored by due time); `mover.py` moves them into the stream when
  due with `promote.lua`; a delayed nack stores the copy and settles the original in
  one script (`retry.lua`);
- peek, remove and purge read and delete ready entries without a consumer (inspection.py).

The driver's own calls translate redis-py exceptions into `relevo.errors` here
(`_boundary`); the background tasks (reader, flusher, keeper, mover) back off and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from relevo.drivers.base import Capabilities, DeliverySink, QueueSpec, QueueStats
from relevo.drivers.redis.connection import (
    NETWORK_ERRORS,
    create_client,
    drop_idle_connections,
    warn_if_volatile,
)
from relevo.drivers.redis.inspection import Inspector
from relevo.drivers.redis.mover import Mover
from relevo.drivers.redis.publisher import Publisher
from relevo.drivers.redis.settings import (
    RedisConsumerOptions,
    RedisQueueOptions,
    RedisSettings,
)
from relevo.drivers.redis.subscription import RedisSubscription
from relevo.drivers.settings import Options, typed_options
from relevo.errors import DriverUnavailable, QueueNotFound, RelevoError
from relevo.message import Envelope

T = TypeVar("T")

GROUP = "relevo"
"""The one consumer group of every queue's stream."""

_CONSUMER_SEQ = itertools.count(1)


def default_consumer_name() -> str:
    """host:pid:n: unique among live processes, and the same again for a container restarted
    with the same hostname and pid, which then re-reads what its previous run left pending."""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_CONSUMER_SEQ)}"


class RedisDriver:
    """`queue.driver.redis`."""

    capabilities = Capabilities(
        durable=True, exact_in_flight=True, delays=True, bounded=True
    )

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self.settings = settings or RedisSettings()
        self._client: Redis | None = None
        self._publisher: Publisher | None = None
        self._max_length: dict[str, int | None] = {}  # queues declared here, their bound
        self._subscriptions: set[RedisSubscription] = set()
        self._inspector: Inspector | None = None
        self._mover: Mover | None = None
        self.reconnects = 0  # outages a subscription came back from (for metrics)

    def _reconnected(self) -> None:
        self.reconnects += 1

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        client = create_client(self.settings)
        try:
            async with self._boundary("connect"):
                await client.ping()
        except DriverUnavailable:
            await client.aclose()
            raise
        self._client = client
        await warn_if_volatile(client, self.settings)
        self._publisher = Publisher(client, self.settings, self._redeclare)
        self._inspector = Inspector(client, GROUP)
        self._mover = Mover(client, self.settings, self._keys)

    async def stop(self) -> None:
        if self._mover is not None:
            await self._mover.close()
            self._mover = None
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
        self._inspector = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- queues -------------------------------------------------------------------------

    def stream(self, queue: str) -> str:
        """The stream key of a queue."""
        return self.settings.key_prefix + queue

    def delayed(self, queue: str) -> str:
        """The sorted-set key of a queue's delayed messages."""
        return self.settings.key_prefix + queue + ":delayed"

    def _keys(self, queue: str) -> tuple[str, str]:
        return self.stream(queue), self.delayed(queue)

    async def declare(self, spec: QueueSpec) -> None:
        options = typed_options(RedisQueueOptions, spec.options)
        await self._repeatable(f"declare {spec.name!r}", lambda: self._create_group(spec.name))
        self._max_length[spec.name] = options.max_length
        self._moving().watch(spec.name)

    async def _create_group(self, queue: str) -> None:
        # From ID 0, so entries added before the group existed are delivered too.
        try:
            await self._redis().xgroup_create(self.stream(queue), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _redeclare(self, queue: str) -> bool:
        """Redeclare a queue this driver declared and Redis lost; False if it never did."""
        if queue not in self._max_length:
            return False
        await self._create_group(queue)
        return True

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], due: float | None = None
    ) -> None:
        if not envelopes:
            return
        if due is not None and due > time.time():
            await self._publish_delayed(queue, envelopes, due)
            return
        publisher = self._publisher
        if publisher is None:
            raise DriverUnavailable("redis driver is not running")
        await publisher.publish(queue, self.stream(queue), self._max_length.get(queue), envelopes)

    async def _publish_delayed(
        self, queue: str, envelopes: Sequence[Envelope], due: float
    ) -> None:
        """Into the queue's sorted set (`delay.lua`, pipelined with other publishes)."""
        publisher = self._publisher
        if publisher is None:
            raise DriverUnavailable("redis driver is not running")
        await publisher.publish(
            queue, self.stream(queue), None, envelopes, self.delayed(queue), due
        )
        mover = self._moving()
        mover.watch(queue)
        mover.wake(due)

    def _moving(self) -> Mover:
        if self._mover is None:
            raise DriverUnavailable("redis driver is not running")
        return self._mover

    async def attach(
        self, queue: str, sink: DeliverySink, prefetch: int, options: Options
    ) -> RedisSubscription:
        consumer_options = typed_options(RedisConsumerOptions, options)
        consumer = consumer_options.consumer_name or default_consumer_name()
        stream = self.stream(queue)

        async def join_group() -> None:
            try:
                await self._redis().xgroup_createconsumer(stream, GROUP, consumer)
            except ResponseError as exc:
                if not await self._redeclare(queue):
                    raise QueueNotFound(f"redis queue {queue!r} is not declared") from exc
                await self._redis().xgroup_createconsumer(stream, GROUP, consumer)

        await self._repeatable(f"attach to {queue!r}", join_group)

        async def redeclare() -> None:
            await self._redeclare(queue)

        # The queue exists now: should Redis come back without it, its consumers
        # declare it again rather than wait on a group that is gone.
        self._max_length.setdefault(queue, None)
        mover = self._moving()
        mover.watch(queue)
        sub = RedisSubscription(
            self._redis(), self.settings, stream, GROUP, consumer, sink, max(1, prefetch),
            redeclare, self.delayed(queue), mover.wake,
        )
        sub.on_reconnect = self._reconnected
        self._subscriptions = {s for s in self._subscriptions if not s.closed}
        self._subscriptions.add(sub)
        return sub

    async def info(self, queue: str) -> QueueStats:
        stream = self.stream(queue)
        async with self._boundary(f"info on {queue!r}"):
            await self._moving().promote(queue)  # due messages count as ready, moved or not
            pipe = self._redis().pipeline(transaction=False)
            pipe.xlen(stream)
            pipe.xpending(stream, GROUP)
            pipe.xinfo_consumers(stream, GROUP)
            pipe.zcard(self.delayed(queue))
            pipe.zrange(self.delayed(queue), 0, 0, withscores=True)
            length, pending, consumers, delayed, first = await pipe.execute(
                raise_on_error=False
            )
        for reply in (length, pending, consumers, delayed, first):
            if isinstance(reply, ResponseError):
                raise QueueNotFound(f"redis queue {queue!r} is not declared ({reply})")
            if isinstance(reply, Exception):
                raise DriverUnavailable(f"redis info on {queue!r}: {reply}")
        in_flight = int(pending["pending"])
        stale_ms = (2 * self.settings.claim_idle + self.settings.block) * 1000
        live = sum(1 for c in consumers if c["pending"] > 0 or c["idle"] <= stale_ms)
        return QueueStats(
            max(0, int(length) - in_flight), in_flight, live, int(delayed),
            float(first[0][1]) if first else None,
        )

    async def peek(self, queue: str, limit: int, after: str | None = None) -> list[Envelope]:
        async with self._inspecting(queue, "peek") as inspector:
            return await inspector.peek(self.stream(queue), limit, after)

    async def remove(self, queue: str, ids: Sequence[str]) -> int:
        async with self._inspecting(queue, "remove") as inspector:
            return await inspector.remove(self.stream(queue), ids)

    async def purge(self, queue: str) -> int:
        async with self._inspecting(queue, "purge") as inspector:
            return await inspector.purge(self.stream(queue))

    # -- helpers ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _inspecting(self, queue: str, what: str) -> AsyncIterator[Inspector]:
        """The inspector, with an undeclared queue as QueueNotFound and no time bound
        (a purge of a long stream takes as long as it takes)."""
        if self._inspector is None:
            raise DriverUnavailable("redis driver is not running")
        try:
            yield self._inspector
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                raise QueueNotFound(f"redis queue {queue!r} is not declared") from None
            raise DriverUnavailable(f"redis {what} on {queue!r} refused: {exc}") from exc
        except (TimeoutError, *NETWORK_ERRORS) as exc:
            raise DriverUnavailable(f"redis {what} on {queue!r} failed: {exc}") from exc
        except RedisError as exc:
            raise DriverUnavailable(f"redis {what} on {queue!r} refused: {exc}") from exc

    def _redis(self) -> Redis:
        if self._client is None:
            raise DriverUnavailable("redis driver is not running")
        return self._client

    async def _repeatable(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """`work` inside the boundary, run once more on a fresh connection if the first
        try met a dropped one: after a Redis restart a pooled connection can fail on its
        first use, though Redis answers again. Only for commands safe to repeat."""
        async with self._boundary(what):
            try:
                return await work()
            except NETWORK_ERRORS:
                await drop_idle_connections(self._redis())
                return await work()

    @contextlib.asynccontextmanager
    async def _boundary(self, what: str) -> AsyncIterator[None]:
        """Bound a call by publish_timeout and turn redis-py errors into relevo's."""
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                yield
        except RelevoError:
            raise
        except (TimeoutError, *NETWORK_ERRORS) as exc:
            raise DriverUnavailable(f"redis {what} failed: {exc or 'timed out'}") from exc
        except RedisError as exc:
            raise DriverUnavailable(f"redis {what} refused: {exc}") from exc
