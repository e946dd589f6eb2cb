"""The in-process driver: a real queue with competing consumers, credit and backpressure.

Each queue is a deque of envelopes. Deliveries are pushed synchronously to whichever
attached subscription has credit (round robin), so draining costs no task switches of
its own. Nothing survives a restart: stopping the driver drops its store.

Delayed messages (a publish with `due`, a nack with `due`) wait in a heap per queue,
ordered by due time; one wake-up per queue, through the clock in use (`relevo.clock`),
moves those that came due to the back of the ready deque. A due message counts as ready
even before its wake-up ran.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections import deque
from collections.abc import Sequence

from relevo.clock import Clock, Timer, current
from relevo.drivers.base import Capabilities, DeliverySink, QueueSpec, QueueStats
from relevo.drivers.credit import Credit
from relevo.drivers.memory_settings import MemoryQueueOptions, MemorySettings
from relevo.drivers.settings import Options, typed_options
from relevo.errors import DriverUnavailable, QueueFull, QueueNotFound
from relevo.message import Delivery, Envelope, Outcome

_order = itertools.count()  # ties of due time keep their publish order


class _MemoryQueue:
    __slots__ = ("clock", "delayed", "dispatching", "hungry", "in_flight", "max_length", "name",
                 "ready", "space", "subscriptions", "timer", "timer_due")

    def __init__(self, name: str, max_length: int | None, clock: Clock) -> None:
        self.name = name
        self.max_length = max_length
        self.clock = clock
        self.ready: deque[Envelope] = deque()
        self.delayed: list[tuple[float, int, Envelope]] = []  # a heap by (due, order)
        self.timer: Timer | None = None  # the one wake-up, for the earliest due time
        self.timer_due = 0.0
        self.in_flight = 0
        self.subscriptions: list[_MemorySubscription] = []
        self.hungry: deque[_MemorySubscription] = deque()  # attached, active, with credit
        self.space: deque[asyncio.Future[None]] = deque()  # publishers waiting for room
        self.dispatching = False

    def is_full(self) -> bool:
        return self.max_length is not None and len(self.ready) + self.in_flight >= self.max_length

    def dispatch(self) -> None:
        """Push ready envelopes to hungry subscriptions until one side runs out."""
        if self.dispatching:  # a sink settled synchronously; the outer loop goes on
            return
        self.dispatching = True
        try:
            ready, hungry = self.ready, self.hungry
            while ready and hungry:
                sub = hungry[0]
                sub.push(ready.popleft())
                if sub.credit == 0:
                    hungry.popleft()
                elif len(hungry) > 1:
                    hungry.rotate(-1)
        finally:
            self.dispatching = False

    def hold(self, due: float, envelope: Envelope) -> None:
        """Keep `envelope` until `due`; wake up then (earlier than planned if need be)."""
        heapq.heappush(self.delayed, (due, next(_order), envelope))
        if self.timer is None or due < self.timer_due:
            self.schedule()

    def schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.delayed:
            self.timer_due = self.delayed[0][0]
            self.timer = self.clock.call_at(self.timer_due, self.wake)

    def wake(self) -> None:
        self.timer = None
        self.promote()
        self.schedule()
        self.dispatch()

    def promote(self) -> None:
        """Move every delayed envelope whose time has come to the back of `ready`."""
        delayed = self.delayed
        if not delayed:
            return
        now = self.clock.time()
        while delayed and delayed[0][0] <= now:
            self.ready.append(heapq.heappop(delayed)[2])

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def make_room(self) -> None:
        """A message left the queue: wake one publisher waiting for space."""
        while self.space:
            waiter = self.space.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _MemorySubscription:
    __slots__ = ("active", "credit", "failure", "loop", "queue", "sink", "thread_id", "unsettled")

    def __init__(self, queue: _MemoryQueue, sink: DeliverySink, prefetch: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.queue = queue
        self.sink = sink
        self.active = True
        self.unsettled = Credit(prefetch)  # settle-once guard and give-back (drivers/credit)
        self.credit = self.unsettled.prefetch  # a plain count: the dispatch loop reads it
        self.failure: asyncio.Future[BaseException] = self.loop.create_future()  # no tasks

    def push(self, envelope: Envelope) -> None:
        self.credit -= 1
        self.queue.in_flight += 1
        delivery = Delivery(
            self, envelope.id, envelope.body, envelope.headers, envelope.attempts + 1, envelope
        )
        self.unsettled.hand_out(delivery)
        self.sink(delivery)

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        if not self.unsettled.settle(delivery):  # given back by close() already
            return
        queue = self.queue
        queue.in_flight -= 1
        envelope: Envelope = delivery.tag
        if outcome is Outcome.ACK:
            queue.make_room()
        elif outcome is Outcome.NACK:
            envelope.attempts += 1
            if due is None:
                queue.ready.append(envelope)
            else:
                queue.hold(due, envelope)
        else:
            queue.ready.appendleft(envelope)
        self.credit += 1
        if self.credit == 1 and self.active:
            queue.hungry.append(self)
        queue.dispatch()

    async def cancel(self) -> None:
        if not self.active:
            return
        self.active = False
        if self in self.queue.hungry:
            self.queue.hungry.remove(self)

    async def close(self) -> None:
        await self.cancel()
        queue = self.queue
        for delivery in self.unsettled.take_back():  # never settled: counts as an attempt
            envelope: Envelope = delivery.tag
            envelope.attempts += 1
            queue.ready.append(envelope)
            queue.in_flight -= 1
        if self in queue.subscriptions:
            queue.subscriptions.remove(self)
        queue.dispatch()


class MemoryDriver:
    """`queue.driver.memory`."""

    capabilities = Capabilities(
        durable=False, exact_in_flight=True, delays=True,
        bounded=True,
    )

    def __init__(self, settings: MemorySettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or MemorySettings()
        self.clock = clock or current()  # delayed messages wake up through it
        self._queues: dict[str, _MemoryQueue] = {}
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False
        for queue in self._queues.values():
            queue.cancel_timer()
            for sub in list(queue.subscriptions):
                await sub.close()
            for waiter in queue.space:
                if not waiter.done():
                    waiter.set_exception(DriverUnavailable("memory driver stopped"))
        self._queues.clear()

    async def declare(self, spec: QueueSpec) -> None:
        self._check_running()
        options = typed_options(MemoryQueueOptions, spec.options)
        queue = self._queues.get(spec.name)
        if queue is None:
            self._queues[spec.name] = _MemoryQueue(spec.name, options.max_length, self.clock)
        else:
            queue.max_length = options.max_length

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], due: float | None = None
    ) -> None:
        target = self._queue(queue)
        if due is not None and due > self.clock.time():
            for envelope in envelopes:  # delayed ones are not held to max_length
                target.hold(due, envelope)
            return
        if target.max_length is None:
            target.ready.extend(envelopes)
        else:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.publish_timeout
            for envelope in envelopes:
                while target.is_full():
                    await self._wait_for_room(target, deadline)
                target.ready.append(envelope)
        target.dispatch()

    async def _wait_for_room(self, queue: _MemoryQueue, deadline: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        queue.space.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise QueueFull(
                f"memory queue {queue.name!r} stayed full ({queue.max_length} messages) "
                f"for the publish timeout of {self.settings.publish_timeout}s"
            ) from None
        finally:
            if not waiter.done():
                waiter.cancel()

    async def attach(
        self, queue: str, sink: DeliverySink, prefetch: int, options: Options
    ) -> _MemorySubscription:
        target = self._queue(queue)
        sub = _MemorySubscription(target, sink, max(1, prefetch))
        target.subscriptions.append(sub)
        target.hungry.append(sub)
        target.dispatch()
        return sub

    async def info(self, queue: str) -> QueueStats:
        target = self._queue(queue)
        target.promote()  # due ones are ready, whether or not the wake-up has run
        delayed = target.delayed
        return QueueStats(
            len(target.ready), target.in_flight, len(target.subscriptions),
            len(delayed), delayed[0][0] if delayed else None,
        )

    async def peek(self, queue: str, limit: int, after: str | None = None) -> list[Envelope]:
        target = self._queue(queue)
        target.promote()
        ready = target.ready
        start = 0
        if after is not None:
            start = next((i + 1 for i, e in enumerate(ready) if e.id == after), len(ready))
        return [_copy(e) for e in itertools.islice(ready, start, start + max(0, limit))]

    async def remove(self, queue: str, ids: Sequence[str]) -> int:
        target = self._queue(queue)
        wanted = set(ids)
        kept = deque(e for e in target.ready if e.id not in wanted)
        removed = len(target.ready) - len(kept)
        target.ready = kept
        for _ in range(min(removed, len(target.space))):  # wake publishers waiting for room
            target.make_room()
        return removed

    async def purge(self, queue: str) -> int:
        target = self._queue(queue)
        target.promote()
        removed = len(target.ready)
        target.ready.clear()
        for _ in range(min(removed, len(target.space))):  # wake publishers waiting for room
            target.make_room()
        return removed

    def _queue(self, name: str) -> _MemoryQueue:
        self._check_running()
        try:
            return self._queues[name]
        except KeyError:
            raise QueueNotFound(f"memory queue {name!r} is not declared") from None

    def _check_running(self) -> None:
        if not self._running:
            raise DriverUnavailable("memory driver is not running")


def _copy(envelope: Envelope) -> Envelope:
    """A peeked message the caller may change without touching the stored one."""
    headers = dict(envelope.headers) if envelope.headers else None
    return Envelope(envelope.id, envelope.body, headers, envelope.attempts)
