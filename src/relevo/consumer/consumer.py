"""A `queue.consumer` at run time: attach to the queue, feed the pool, stop in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic import BaseModel

from relevo.consumer.failures import log_failure
from relevo.consumer.pool import WorkerPool
from relevo.context import Runtime
from relevo.drivers.base import Options, Subscription
from relevo.errors import StopTimeout
from relevo.functions.base import Function
from relevo.message import Delivery, Unreadable
from relevo.middleware.base import ConsumerScope, Middleware
from relevo.middleware.chain import ConsumerChain
from relevo.middleware.dead_letter import DeadLetter
from relevo.queue import Queue

log = logging.getLogger("relevo.consumer")


class Consumer:
    def __init__(
        self,
        entry_id: str,
        queue: Queue,
        function: Function,
        *,
        concurrency: int,
        prefetch: int,
        auto_ack: bool,
        options: Options,
        stop_timeout_s: float,
        middlewares: Sequence[Middleware],
        runtime: Runtime | None,
    ) -> None:
        self.entry_id = entry_id
        self.queue = queue
        self.function = function  # loaded before this consumer starts (it is a dependency)
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.options = options if isinstance(options, BaseModel) else dict(options)
        self.stop_timeout_s = stop_timeout_s
        self.middlewares = list(middlewares)  # outermost first; dead letter and retry last
        self._chain: ConsumerChain | None = None
        self.runtime = runtime
        self._pool: WorkerPool | None = None
        self._subscription: Subscription | None = None
        self._stopping = False
        self._processed_before = 0  # by the pools of earlier starts

    @property
    def processed(self) -> int:
        """Handler calls finished since this consumer was built, across restarts."""
        pool = self._pool
        return self._processed_before + (pool.processed if pool is not None else 0)

    @property
    def workers(self) -> list[asyncio.Task[None]]:
        """The running worker tasks (empty when stopped)."""
        return list(self._pool.workers) if self._pool is not None else []

    async def start(self) -> None:
        self._stopping = False
        handler = self.function.handler
        scope = ConsumerScope(self.entry_id, self.queue.entry_id)
        chain = self._chain = ConsumerChain.build(scope, self.middlewares, handler)
        pool = WorkerPool(
            self.entry_id, self.queue.entry_id, handler,
            chain.handle if chain is not None else None,
            chain.meter if chain is not None else None,
            chain.ack_counter if chain is not None else None,
            self.queue.codec.decode, self.concurrency, self.auto_ack, self.runtime,
        )
        pool.start()
        self._pool = pool
        put = pool.buffer.put

        def sink(delivery: Delivery) -> None:
            if self._stopping:  # pushed while the driver was cancelling: give it straight back
                delivery.release()
                return
            if chain is not None:
                delivery.hooks = chain
            put(delivery)

        sink.unreadable = self._unreadable  # type: ignore[attr-defined]
        try:
            self._subscription = await self.queue.driver.attach(
                self.queue.name, sink, self.prefetch, self.options
            )
        except BaseException:
            await pool.stop(0)
            raise

    @property
    def running(self) -> bool:
        return self._pool is not None and not self._stopping

    @property
    def idle(self) -> bool:
        """Nothing buffered, no handler running, no middleware work (dead-letter move) under way."""
        if self._pool is None:
            return True
        busy = self._chain is not None and self._chain.busy()
        return self._pool.idle and not busy

    def activity(self) -> tuple[int, int, int]:
        """(handler calls finished, of those failed since it last started, in a handler now)."""
        pool = self._pool
        if pool is None:
            return self.processed, 0, 0
        return self.processed, pool.failed, pool.running

    def _unreadable(self, delivery: Unreadable) -> None:
        """An entry the driver cannot read: nacked without a handler, like a failure.

        With a dead letter it is retried and dead-lettered as any failing message (its
        body there is what the driver found); without one it would come back forever,
        so it is logged at ERROR with its ID, reason and content, and removed.
        """
        if self._stopping:
            delivery.release()
            return
        log_failure(self.entry_id, self.queue.entry_id, delivery, delivery.reason)
        if self._chain is not None and any(isinstance(m, DeadLetter) for m in self.middlewares):
            delivery.hooks = self._chain
            delivery.nack(delivery.reason)
            return
        log.error(
            "%s: removed unreadable message %s from %s (no dead_letter to keep it): %s; "
            "content: %s", self.entry_id, delivery.id, self.queue.entry_id, delivery.reason,
            delivery.body[:1000].decode(errors="backslashreplace"),
            extra={"queue": self.queue.entry_id, "consumer": self.entry_id,
                   "message_id": delivery.id, "attempts": delivery.attempts},
        )
        delivery.ack()

    @property
    def in_flight(self) -> int:
        """Deliveries this consumer holds, buffered or in handlers (0 when stopped)."""
        return 0 if self._pool is None else self._pool.held

    async def wait_failure(self) -> BaseException:
        """Resolves if a worker or a task of the subscription dies (a bug, never a
        handler error); the supervisor then restarts this consumer."""
        assert self._pool is not None
        assert self._subscription is not None
        pool_failure, subscription_failure = self._pool.failure, self._subscription.failure
        await asyncio.wait((pool_failure, subscription_failure),
                           return_when=asyncio.FIRST_COMPLETED)
        return (pool_failure if pool_failure.done() else subscription_failure).result()

    async def stop(self) -> None:
        """No new deliveries; buffered ones back at once; running ones get `stop_timeout`
        to finish, then are cancelled and their messages come back."""
        self._stopping = True
        pool, subscription = self._pool, self._subscription
        if pool is None:
            return
        if subscription is not None:
            await subscription.cancel()
        for delivery in pool.take_buffered():
            delivery.release()
        finished = await pool.stop(self.stop_timeout_s)
        if self._chain is not None:
            await self._chain.drain()
        if subscription is not None:
            await subscription.close()
        self._processed_before += pool.processed
        self._pool = self._subscription = None
        if not finished:
            raise StopTimeout(
                f"{self.entry_id}: handlers still running after stop_timeout "
                f"({self.stop_timeout_s}s); their messages go back to the queue"
            )
