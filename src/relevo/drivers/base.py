"""The Driver protocol: the one contract every backend keeps (memory, AMQP, Redis, PostgreSQL).

A driver stores messages as `Envelope`s and hands them to consumers as `Delivery`s.
Delivery is push with credit: `attach(queue, sink, prefetch)` makes the driver call
`sink(delivery)` whenever it has a message and the subscription has fewer than
`prefetch` unsettled deliveries. Settling a delivery frees one credit.

Drivers know nothing of consumers, functions, codecs or config files; they move bytes
and headers. `tests/drivers/conformance.py` checks every rule written here.

Two rules for what goes wrong off the happy path:

- An entry the driver cannot read as a message (a foreign producer's, or damaged) is
  handed over as an `Unreadable` delivery through `deliver_unreadable`, never raised in
  the reading task: the consumer nacks it without calling its handler, so it takes the
  failure path of any message. Drivers find such entries in their exception path only:
  a good entry costs nothing more.
- A background task of a subscription (reader, flusher, lease keeper) that dies is
  watched by `watch_task`: logged at once, and `failure` resolves, so the consumer turns
  `failed` and its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from relevo.drivers.settings import Options
from relevo.message import Delivery, Envelope, Outcome, Unreadable

__all__ = [
    "Capabilities", "ConnectionPublisher", "DeliverySink", "Driver", "Options", "QueueSpec",
    "QueueStats", "Subscription", "deliver_unreadable", "watch_task",
]

DeliverySink = Callable[[Delivery], None]
"""Receives each delivery on the event loop thread; must not block.

A consumer's sink also carries an `unreadable` attribute: the callable that takes an
`Unreadable` delivery (see `deliver_unreadable`).
"""


def deliver_unreadable(sink: DeliverySink, delivery: Unreadable) -> None:
    """Hand an entry the driver cannot read to the consumer, like a delivery.

    The driver counts it unsettled (it holds credit) before calling this. A sink without
    an `unreadable` attribute (a bare callable in a test) gets it as any delivery.
    """
    take: Callable[[Unreadable], None] = getattr(sink, "unreadable", sink)
    take(delivery)


def watch_task(
    task: asyncio.Task[Any], failure: asyncio.Future[BaseException], log: logging.Logger
) -> None:
    """Never let a background task die silently: log it at once and resolve `failure`."""

    def done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        log.error("%s died: %r", task.get_name(), error, exc_info=error)
        if not failure.done():
            failure.set_result(error)

    task.add_done_callback(done)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue to declare: its broker-side name and its driver-specific options."""

    name: str
    options: Options  # the driver kind's queue options model, or a mapping of them


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue. message_count = ready + in_flight; delayed is apart from it."""

    ready: int
    in_flight: int
    consumer_count: int
    delayed: int = 0  # stored, waiting for their due time (a due one counts as ready)
    next_due: float | None = None  # epoch seconds of the earliest delayed message, if known

    @property
    def message_count(self) -> int:
        return self.ready + self.in_flight

    def as_dict(self) -> dict[str, int]:
        return {
            "message_count": self.message_count,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "consumer_count": self.consumer_count,
            "delayed": self.delayed,
        }


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can promise; the conformance suite skips checks a driver disclaims."""

    durable: bool  # messages survive a restart of the process
    exact_in_flight: bool  # info() splits ready / in_flight exactly
    delays: bool = False  # publish(due=...) and settle(..., due=...) keep the message stored
    quiet_peek: bool = True  # peek leaves no trace: the next delivery counts no extra attempt
    bounded: bool = False  # queues take `max_length`; a full queue holds publishes, then QueueFull


class Subscription(Protocol):
    """One consumer's attachment to one queue. `settle` is also its `Settler` role."""

    loop: asyncio.AbstractEventLoop
    thread_id: int
    failure: asyncio.Future[BaseException]
    """Resolves with the error if one of the subscription's own tasks dies (`watch_task`)."""

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        """Apply `outcome` to a delivery this subscription made.

        Called at most once per delivery (Delivery enforces it), on the loop thread.
        Must not block: drivers that need I/O queue it and flush soon after. Frees one
        credit, so the driver may push the next delivery from inside this call.

        `due` (epoch seconds) goes with NACK only: the message, one attempt more, waits in
        the driver's store until then. The delayed copy is stored before the original
        leaves (or both change in one atomic step): a crash duplicates, never loses.
        """

    async def cancel(self) -> None:
        """Stop pushing new deliveries. Those already pushed stay valid and settleable."""

    async def close(self) -> None:
        """Flush queued settlements, then give every still-unsettled delivery back.

        Each of those is claimed (so a late ack from an abandoned handler does nothing)
        and counts as a failed attempt: a handler had it. Idempotent.
        """


class Driver(Protocol):
    """A backend. Every coroutine raises `relevo.errors` exceptions, never the client's."""

    capabilities: Capabilities

    async def start(self) -> None:
        """Connect. Raises DriverUnavailable when the broker cannot be reached."""

    async def stop(self) -> None:
        """Close subscriptions and connections. Idempotent."""

    async def declare(self, spec: QueueSpec) -> None:
        """Create the queue if missing. Idempotent; options that conflict with the
        queue the broker already has raise BrokerConflict."""

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], due: float | None = None
    ) -> None:
        """Store the envelopes, in order, before returning (broker confirms included).

        With `due` (epoch seconds) in the future they wait in the driver's store (never
        in a worker's memory) and become ready at that time, each exactly once however
        many processes run; a `due` in the past means ready now. Drivers without
        `capabilities.delays` raise PublishError for a future `due`.

        Raises QueueNotFound for an undeclared queue; QueueFull or DriverUnavailable when
        it cannot complete within the driver's publish timeout. Never hangs.
        """

    async def attach(
        self, queue: str, sink: DeliverySink, prefetch: int, options: Options
    ) -> Subscription:
        """Start pushing deliveries to `sink`, never more than `prefetch` unsettled."""

    async def info(self, queue: str) -> QueueStats:
        """Counts for a declared queue; QueueNotFound otherwise."""

    async def peek(self, queue: str, limit: int, after: str | None = None) -> list[Envelope]:
        """Up to `limit` ready messages, oldest first, after the one with ID `after`.

        Nothing is consumed and no attempt is counted; `attempts` is as stored.
        """

    async def remove(self, queue: str, ids: Sequence[str]) -> int:
        """Delete the ready messages with these IDs; returns how many were removed."""

    async def purge(self, queue: str) -> int:
        """Delete every ready message (not those in flight); returns how many."""


@runtime_checkable
class ConnectionPublisher(Protocol):
    """A driver that can publish through the caller's own database connection."""

    async def publish_in(
        self, connection: Any, queue: str, envelopes: Sequence[Envelope],
        due: float | None = None,
    ) -> None:
        """Store the envelopes inside the connection's open transaction: they exist if
        and only if it commits. PublishError for a connection of the wrong kind."""
