"""A `queue.consumer` at run time: attach to the queue, feed the pool, stop in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from relevo.consumer.dead_letter import DeadLetterRouter
from relevo.consumer.failures import log_failure
from relevo.consumer.pool import WorkerPool
from relevo.context import Runtime
from relevo.drivers.base import Subscription
from relevo.errors import StopTimeout
from relevo.functions.base import Function
from relevo.message import Delivery, Unreadable
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
        options: Mapping[str, Any],
        stop_timeout_s: float,
        dead_letter: DeadLetterRouter | None,
        runtime: Runtime | None,
    ) -> None:
        self.entry_id = entry_id
        self.queue = queue
        self.function = function  # loaded before this consumer starts (it is a dependency)
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.options = dict(options)
        self.stop_timeout_s = stop_timeout_s
        self.dead_letter = dead_letter
        self.runtime = runtime
        self._pool: WorkerPool | None = None
        self._subscription: Subscription | None = None
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        pool = WorkerPool(
            self.entry_id, self.queue.entry_id, self.function.handler, self.queue.codec.decode,
            self.concurrency, self.auto_ack, self.runtime,
        )
        pool.start()
        self._pool = pool
        put = pool.buffer.put
        router = self.dead_letter

        def sink(delivery: Delivery) -> None:
            if self._stopping:  # pushed while the driver was cancelling: give it straight back
                delivery.release()
                return
            if router is not None:
                delivery.on_nack = router
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
        """Nothing buffered, no handler running, no dead-letter move under way."""
        if self._pool is None:
            return True
        moving = self.dead_letter is not None and bool(self.dead_letter.moving)
        return self._pool.idle and not moving

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
        if self.dead_letter is not None:
            delivery.on_nack = self.dead_letter
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
        if self.dead_letter is not None:
            await self.dead_letter.wait()
        if subscription is not None:
            await subscription.close()
        self._pool = self._subscription = None
        if not finished:
            raise StopTimeout(
                f"{self.entry_id}: handlers still running after stop_timeout "
                f"({self.stop_timeout_s}s); their messages go back to the queue"
            )
