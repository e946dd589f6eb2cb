"""Messages on their way in (Envelope) and out (Delivery), and the settle-once rule.

A Delivery is settled exactly once: the first `ack()`, `nack()` or `release()` wins and
returns True; every later call returns False and does nothing. That holds across threads,
because sync handlers run in worker threads and may settle from there.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable
from typing import Any, Protocol

HeaderValue = str | int | float | bool
Headers = dict[str, HeaderValue]

NEUTRAL_HEADERS = frozenset(
    {"correlation_id", "reply_to", "content_type", "message_type", "encoding", "traceparent"}
)
"""Header names every driver maps to its own notion (AMQP properties, stream fields)."""

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


NackHook = Callable[["Delivery", str], None]
"""Called instead of a plain nack (e.g. to dead-letter); owns the settlement from then on."""

_SETTLE_LOCK = threading.Lock()


class Delivery:
    """One delivery of one message to one consumer. What `relevo.message()` returns."""

    __slots__ = ("_settled", "attempts", "body", "headers", "id", "on_nack", "settler", "tag")

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
        self.on_nack: NackHook | None = None
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
        self._on_loop(self.settler.settle, self, Outcome.ACK)
        return True

    def nack(self, reason: str = "nacked by handler") -> bool:
        """Hand the message back for another attempt (or to its dead-letter queue)."""
        if not self.claim():
            return False
        if self.on_nack is not None:
            self._on_loop(self.on_nack, self, reason)
        else:
            self._on_loop(self.settler.settle, self, Outcome.NACK)
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

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
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
