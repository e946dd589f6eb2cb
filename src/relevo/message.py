"""Messages on their way in (Envelope) and out (Delivery), and the settle-once rule.

A Delivery is settled exactly once: the first `ack()`, `nack()` or `release()` wins and
returns True; every later call returns False and does nothing. That holds across threads,
because sync handlers run in worker threads and may settle from there.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relevo import clock
from relevo.durations import parse_duration_s

HeaderValue = str | int | float | bool
Headers = dict[str, HeaderValue]

RESERVED_PREFIX = "x_"
"""Header names starting with this are written by the runtime only."""


class Outcome(enum.Enum):
    """What a driver must do with a delivery."""

    ACK = "ack"  # handled: remove it from the queue
    NACK = "nack"  # handler failed: deliver it again, one attempt more
    RELEASE = "release"  # never reached a handler: give it back, attempts unchanged


class Envelope:
    """A message as a driver stores and moves it: ID, encoded body, headers, attempts so far."""

    __slots__ = ("attempts", "body", "headers", "id")

    def __init__(
        self, id: str, body: bytes, headers: Headers | None = None, attempts: int = 0
    ) -> None:
        self.id = id
        self.body = body
        self.headers = headers
        self.attempts = attempts  # deliveries that ended in nack (or an abandoned handler)

    def __repr__(self) -> str:
        return f"Envelope(id={self.id!r}, attempts={self.attempts}, {len(self.body)} bytes)"


class Settler(Protocol):
    """The driver side of a subscription: applies outcomes on the event loop thread."""

    loop: asyncio.AbstractEventLoop
    thread_id: int

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None: ...


class Disposition(enum.Enum):
    """What finally became of a delivery, as settlement hooks report it."""

    ACK = "ack"  # handled and removed
    NACK = "nack"  # failed, back in the queue at once
    RETRY = "retry"  # failed, back in the queue after a delay
    DEAD_LETTER = "dead_letter"  # moved to the queue's dead-letter queue
    REJECT = "reject"  # rejected with no dead-letter queue: dropped


@dataclass(slots=True)
class Failure:
    """A failed delivery on its way to its disposition; nack hooks may change it."""

    reason: str
    delay_s: float | None = None  # redeliver no sooner than this, counted from the failure
    reject: bool = False  # no more attempts: dead-letter it, or drop it


class SettleHooks(Protocol):
    """A consumer's settlement path (its middleware chain), installed on each delivery."""

    observes_ack: bool  # False: an ack goes straight to the driver

    def ack(self, delivery: Delivery) -> None: ...

    def fail(self, delivery: Delivery, failure: Failure) -> None: ...


log = logging.getLogger("relevo.consumer")

_SETTLE_LOCK = threading.Lock()


def settle_failure(
    delivery: Delivery, failure: Failure, consumer: str = "", queue: str = ""
) -> Disposition:
    """The end of every nack path: drop a reject, redeliver after the delay or at once."""
    if failure.reject:
        where = f"{consumer}: message {delivery.id} from {queue}" if consumer else (
            f"message {delivery.id}")
        log.error("%s rejected and dropped (no dead_letter): %s", where, failure.reason,
                  extra={"queue": queue, "consumer": consumer, "message_id": delivery.id,
                         "attempts": delivery.attempts})
        delivery.settler.settle(delivery, Outcome.ACK)
        return Disposition.REJECT
    if failure.delay_s:
        delivery.settler.settle(delivery, Outcome.NACK, clock.now() + failure.delay_s)
        return Disposition.RETRY
    delivery.settler.settle(delivery, Outcome.NACK)
    return Disposition.NACK


class Delivery:
    """One delivery of one message to one consumer. What `relevo.message()` returns."""

    __slots__ = ("_settled", "attempts", "body", "headers", "hooks", "id", "settler", "tag")

    def __init__(
        self,
        settler: Settler,
        id: str,
        body: bytes,
        headers: Headers | None,
        attempts: int,
        tag: Any = None,
    ) -> None:
        self.settler = settler
        self.id = id
        self.body = body
        self.headers: Headers = headers if headers is not None else {}
        self.attempts = attempts  # 1 on the first delivery
        self.tag = tag  # the driver's own handle (record, delivery tag, stream entry ID)
        self.hooks: SettleHooks | None = None  # set by the consumer when it has middlewares
        self._settled = False

    def header(self, key: str, default: Any = None) -> Any:
        return self.headers.get(key, default)

    @property
    def settled(self) -> bool:
        return self._settled

    def ack(self) -> bool:
        """Remove the message from its queue. True the first time, False after."""
        if not self.claim():
            return False
        hooks = self.hooks
        if hooks is not None and hooks.observes_ack:
            self._on_loop(hooks.ack, self)
        else:
            self._on_loop(self.settler.settle, self, Outcome.ACK)
        return True

    def nack(self, reason: str | None = None, delay: float | str | None = None) -> bool:
        """Hand the message back for another attempt, no sooner than `delay` if given.

        `delay` is seconds or a duration string ("30s"); without it the queue's retry
        policy decides. Past `dead_letter.max_attempts` the message is dead-lettered.
        """
        delay_s = None if delay is None else parse_duration_s(delay)
        return self.fail(Failure(reason or "nacked by handler", delay_s))

    def reject(self, reason: str) -> bool:
        """No more attempts: to the dead-letter queue at once, or dropped without one."""
        return self.fail(Failure(reason, reject=True))

    def fail(self, failure: Failure) -> bool:
        """Settle as failed; the consumer's nack hooks (retry, dead letter) decide the rest."""
        if not self.claim():
            return False
        hooks = self.hooks
        if hooks is not None:
            self._on_loop(hooks.fail, self, failure)
        else:
            self._on_loop(settle_failure, self, failure)
        return True

    def release(self) -> bool:
        """Give back a delivery no handler has seen; it does not count as an attempt."""
        if not self.claim():
            return False
        self._on_loop(self.settler.settle, self, Outcome.RELEASE)
        return True

    def claim(self) -> bool:
        """Take the single right to settle. Drivers use it to void deliveries they give back."""
        with _SETTLE_LOCK:
            if self._settled:
                return False
            self._settled = True
            return True

    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        settler = self.settler
        if threading.get_ident() == settler.thread_id:
            fn(*args)
        else:
            settler.loop.call_soon_threadsafe(fn, *args)

    def __repr__(self) -> str:
        return f"Delivery(id={self.id!r}, attempts={self.attempts}, settled={self._settled})"


class Unreadable(Delivery):
    """A stored entry the driver cannot read as a message (a foreign producer's, or damaged).

    It never reaches a handler: the consumer nacks it with `reason`, so it takes the
    failure path of any message (attempts, dead letter). `id` is the best handle the
    driver has (the stream entry ID on Redis) and `body` keeps the raw content, so a dead
    letter shows what arrived.
    """

    __slots__ = ("reason",)

    def __init__(
        self, settler: Settler, id: str, body: bytes, attempts: int, tag: Any, reason: str
    ) -> None:
        super().__init__(settler, id, body, None, attempts, tag)
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable(id={self.id!r}, attempts={self.attempts}, reason={self.reason!r})"
