"""The middleware seam: hooks around publish, around handling, on nack and on settlement.

Every hook of `Middleware` does nothing but pass on; a subclass overrides the ones it
needs. Chains are composed once (`chain.py`) from the hooks each middleware actually
overrides, so a hook nobody overrides costs nothing per message.

Order: the first middleware of the list is the outermost. For `publish` and `handle`
it runs first and sees the result last; for `nack` it sees the failure first.
Hooks other than `publish` and `handle` run on the event loop thread and must not block.
Chains bind `call_next` by keyword: an override keeps the parameter's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relevo.message import Delivery, Disposition, Envelope, Failure, Headers

PublishNext = Callable[[Sequence[Envelope], float | None], Awaitable[None]]
HandleNext = Callable[[Delivery, Any], Awaitable[Any]]
NackNext = Callable[[Delivery, Failure], None]


@dataclass(frozen=True, slots=True)
class Settlement:
    """The final disposition of one delivery: what happened, why, after how long."""

    disposition: Disposition
    reason: str | None = None  # None for an ack
    delay_s: float | None = None  # RETRY only: how long the message waits


class Meter(Protocol):
    """Raw figures of one consumer's handler calls, appended to by its worker pool.

    The pool does no call per message: it appends to these lists (a handler call's
    seconds to `spent`; for a first delivery, its start and headers to `starts` and
    `headers`) and calls `flush` once `spent` holds more than `batch` values. The
    owner turns them into its figures in `flush` and empties the lists in place (the
    pool keeps references to them).
    """

    spent: list[float]  # perf_counter seconds of each handler call
    starts: list[float]  # perf_counter at the handler start of each first delivery
    headers: list[Headers]  # those first deliveries' headers, in the same order
    batch: int

    def flush(self) -> None:
        """Take in what the lists hold and empty them (on the loop thread)."""


class ConsumerScope:
    """What the hooks of one running consumer see of it."""

    __slots__ = ("acked", "consumer_id", "queue_id", "report")

    def __init__(self, consumer_id: str, queue_id: str) -> None:
        self.consumer_id = consumer_id
        self.queue_id = queue_id
        self.acked = 0  # deliveries acked, kept when a middleware sets `settled_acks` False
        # Tells every `settled` hook; set by the chain. A nack hook that takes a delivery
        # over (as dead-lettering does) calls it once the delivery is settled.
        self.report: Callable[[Delivery, Settlement], None] = _ignore

    def __repr__(self) -> str:
        return f"ConsumerScope({self.consumer_id!r}, queue={self.queue_id!r})"


def _ignore(delivery: Delivery, settlement: Settlement) -> None:
    return None


class Middleware:
    """Base class of every middleware. Override only the hooks you need."""

    settled_acks = True
    """False: `settled` hears of failures only, and the chain counts acks in
    `scope.acked` instead (an ack then costs no hook call)."""

    async def publish(
        self, queue_id: str, envelopes: Sequence[Envelope], due: float | None,
        call_next: PublishNext,
    ) -> None:
        """Around storing messages published to queue entry `queue_id`.

        May change the envelopes' headers before `await call_next(envelopes, due)` (an
        envelope without headers has `headers` None: give it a new dict). `due` is the
        epoch time a delayed publish waits for, or None. Runs for user publishes, not
        for the runtime's own moves (dead letters keep their headers as they were).
        """
        await call_next(envelopes, due)

    async def handle(
        self, scope: ConsumerScope, delivery: Delivery, payload: Any, call_next: HandleNext
    ) -> Any:
        """Around one handler call: `return await call_next(delivery, payload)`.

        Time it, open a span from `delivery.headers` (the handler runs inside this
        scope, in this context, a thread handler included). An exception from the
        handler passes through here; what is returned or raised settles the delivery.
        """
        return await call_next(delivery, payload)

    def meter(self, scope: ConsumerScope) -> Meter | None:
        """A consumer starts: return the `Meter` its worker pool records every handler
        call in, or None. Cheaper than `handle` (no coroutine, no call at all per message:
        the pool appends raw numbers to the meter's lists after it settled the delivery)."""
        return None

    def nack(
        self, scope: ConsumerScope, delivery: Delivery, failure: Failure, call_next: NackNext
    ) -> None:
        """A delivery failed: change `failure` (delay, reject) and pass on, or take it over.

        Passing on ends in the driver: a reject is dropped, a delay waits in the
        driver's store, otherwise it is redelivered at once. A middleware that takes
        the delivery over (dead-lettering) must settle it and call `scope.report`.
        """
        call_next(delivery, failure)

    def settled(self, scope: ConsumerScope, delivery: Delivery, settlement: Settlement) -> None:
        """The delivery's final disposition (ack, nack, retry, dead_letter, reject)."""

    async def drain(self) -> None:
        """A consumer stops: let work under way (a dead-letter move) finish."""

    def busy(self) -> bool:
        """True while work it started is under way (what `drain` would wait for)."""
        return False


def overrides(middleware: Middleware, hook: str) -> bool:
    """True if `middleware` does something in `hook` (its class replaces the default)."""
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)
