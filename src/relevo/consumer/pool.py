"""The worker pool: `concurrency` tasks taking deliveries from one buffer and calling the handler.

The buffer is fed by the driver, which never has more than `prefetch` deliveries
unsettled, so the buffer needs no bound of its own and backpressure comes for free:
busy workers leave deliveries unsettled, which stops the driver from pushing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from relevo.consumer.failures import log_failure, log_retry
from relevo.consumer.settle import describe, nack_reason
from relevo.context import Runtime, current_delivery, current_runtime
from relevo.control import Reject, Retry
from relevo.functions.base import Handler
from relevo.message import Delivery, Outcome
from relevo.middleware.base import ConsumerScope, Meter

WrappedHandler = Callable[[Delivery, Any], Any]
"""The handler inside the consumer's `handle` middlewares (composed once, awaitable)."""

log = logging.getLogger("relevo.consumer")


class DeliveryBuffer:
    """An unbounded FIFO on one event loop: what asyncio.Queue does, minus the bookkeeping
    (maxsize, putters, task_done) that costs on every message and that credit makes moot."""

    __slots__ = ("items", "waiters")

    def __init__(self) -> None:
        self.items: deque[Delivery | None] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()

    def put(self, item: Delivery | None) -> None:
        self.items.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> Delivery | None:
        items = self.items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and items:
                    self._wake_one()  # woken, then cancelled: pass the wake-up on
                raise
        return items.popleft()

_YIELD_EVERY = 64  # a worker whose handler never awaits still lets the loop breathe


class WorkerPool:
    def __init__(
        self,
        label: str,
        queue_id: str,
        handler: Handler,
        wrapped: WrappedHandler | None,
        meter: Meter | None,
        ack_counter: ConsumerScope | None,
        decode: Callable[[bytes], Any],
        concurrency: int,
        auto_ack: bool,
        runtime: Runtime | None,
    ) -> None:
        self.label = label
        self.queue_id = queue_id
        self.handler = handler
        self.wrapped = wrapped  # None: no middleware wraps handling, call the handler bare
        self.meter = meter  # None: no middleware measures handler calls
        # not None: the chain only counts acks; the pool settles its acks straight with
        # the driver (it runs on the driver's loop) and counts them in `acked`
        self.ack_counter = ack_counter
        self.decode = decode
        self.concurrency = concurrency
        self.auto_ack = auto_ack
        self.runtime = runtime
        self.buffer = DeliveryBuffer()
        self.failed = 0  # handler calls that failed (for the live status)
        self.workers: list[asyncio.Task[None]] = []
        self.processed = 0  # handler calls finished; what process recycling counts
        self.failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for n in range(self.concurrency):
            task = loop.create_task(self._work(), name=f"{self.label}#{n}")
            task.add_done_callback(self._on_worker_done)
            self.workers.append(task)

    @property
    def idle(self) -> bool:
        """No delivery waits in the buffer and every worker waits for one."""
        buffer = self.buffer
        waiting = sum(1 for waiter in buffer.waiters if not waiter.done())
        return not buffer.items and waiting == len(self.workers)

    @property
    def held(self) -> int:
        """Deliveries buffered or in a handler right now."""
        waiting = sum(1 for waiter in self.buffer.waiters if not waiter.done())
        buffered = sum(1 for item in self.buffer.items if item is not None)
        return buffered + max(0, len(self.workers) - waiting)

    @property
    def running(self) -> int:
        """Workers in a handler now."""
        waiting = sum(1 for waiter in self.buffer.waiters if not waiter.done())
        return max(0, len(self.workers) - waiting)

    def take_buffered(self) -> list[Delivery]:
        """Empty the buffer: deliveries no worker has started."""
        items = self.buffer.items
        taken = [item for item in items if item is not None]
        items.clear()
        return taken

    async def stop(self, timeout_s: float) -> bool:
        """Let running handlers finish within `timeout_s`; cancel the rest. True if none was."""
        for _ in self.workers:
            self.buffer.put(None)  # one stop signal per worker, behind any work
        if not self.workers:
            return True
        _, pending = await asyncio.wait(self.workers, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return not pending

    def _on_worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.failure.done():
            return
        error = task.exception()
        if error is not None:
            log.error("%s died: %r", task.get_name(), error, exc_info=error)
            self.failure.set_result(error)

    async def _work(self) -> None:
        if self.runtime is not None:
            current_runtime.set(self.runtime)
        get, handler, decode, auto_ack = self.buffer.get, self.handler, self.decode, self.auto_ack
        wrapped, meter, clock = self.wrapped, self.meter, time.perf_counter
        counter, acked = self.ack_counter, Outcome.ACK
        started = 0.0
        if meter is not None:  # raw figures: appends here, the meter buckets them in flush
            spent, starts, heads, batch = meter.spent, meter.starts, meter.headers, meter.batch
        set_delivery = current_delivery.set
        handled = 0
        while True:
            delivery = await get()
            if delivery is None:
                return
            set_delivery(delivery)
            if auto_ack:
                delivery.ack()
            try:
                payload = decode(delivery.body)
            except Exception as exc:
                reason = f"undecodable body: {describe(exc)}"
                self.failed += 1
                log_failure(self.label, self.queue_id, delivery, reason)
                delivery.nack(reason)
                continue
            if meter is not None:
                started = clock()
            try:
                result = handler(payload) if wrapped is None else wrapped(delivery, payload)
                if type(result) is CoroutineType:
                    result = await result
            except Retry as retry:
                self.failed += 1
                self._retry(delivery, retry)
            except Reject as reject:
                self.failed += 1
                log_failure(self.label, self.queue_id, delivery, f"rejected: {reject.reason}")
                delivery.reject(reject.reason)
            except Exception as exc:
                reason = describe(exc)
                self.failed += 1
                log_failure(self.label, self.queue_id, delivery, reason, exc)
                delivery.nack(reason)
            else:
                refusal = nack_reason(result)
                if refusal is None:
                    if counter is None:
                        delivery.ack()
                    elif delivery.claim():  # what delivery.ack() does through the chain
                        delivery.settler.settle(delivery, acked)
                        counter.acked += 1
                elif type(result) is Retry:  # Lua's `return nil, err, delay`
                    self.failed += 1
                    self._retry(delivery, result)
                else:
                    self.failed += 1
                    log_failure(self.label, self.queue_id, delivery, refusal)
                    delivery.nack(refusal)
            if meter is not None:
                spent.append(clock() - started)
                if delivery.attempts == 1:
                    starts.append(started)
                    heads.append(delivery.headers)
                if len(spent) > batch:
                    meter.flush()
            handled += 1
            self.processed += 1
            if handled % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _retry(self, delivery: Delivery, retry: Retry) -> None:
        log_retry(self.label, self.queue_id, delivery, retry.reason, retry.after_s)
        delivery.nack(retry.reason, retry.after_s)
