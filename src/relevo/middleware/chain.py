"""Composing middlewares once, so that per message only the hooks in use run.

A consumer with no middleware gets no chain at all: its deliveries settle straight
with the driver, exactly as before the seam existed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from types import CoroutineType
from typing import Any

from relevo.message import Delivery, Disposition, Failure, Headers, Outcome, settle_failure
from relevo.middleware.base import (
    ConsumerScope,
    HandleNext,
    Meter,
    Middleware,
    NackNext,
    PublishNext,
    Settlement,
    overrides,
)

_ACKED = Settlement(Disposition.ACK)
_ACK = Outcome.ACK


def compose_publish(
    queue_id: str, middlewares: Sequence[Middleware], store: PublishNext
) -> PublishNext | None:
    """`store` wrapped in every `publish` hook, or None when no middleware has one."""
    users = [m for m in middlewares if overrides(m, "publish")]
    if not users:
        return None
    call = store
    for middleware in reversed(users):
        call = functools.partial(middleware.publish, queue_id, call_next=call)
    return call


class ConsumerChain:
    """One consumer's middlewares, composed when it starts: the `SettleHooks` of its
    deliveries and, if any middleware wraps handling, the wrapped handler call."""

    def __init__(
        self, scope: ConsumerScope, middlewares: Sequence[Middleware],
        handler: Callable[[Any], Any],
    ) -> None:
        self.scope = scope
        self.middlewares = list(middlewares)
        watching = [m for m in middlewares if overrides(m, "settled")]
        self._watchers = [m.settled for m in watching]
        self._ack_watchers = [m.settled for m in watching if m.settled_acks]
        self.observes_ack = bool(watching)  # an ack reaches `ack()` below, not the driver
        # an ack needs nothing but counting: the worker pool may settle its own acks
        # with the driver and add them to `scope.acked` itself (no frames per ack)
        self.ack_counter = scope if watching and not self._ack_watchers else None
        scope.report = self._report if self._watchers else _ignore
        self.fail_next = self._compose_nack()
        self.handle = self._compose_handle(handler)
        self.meter = self._compose_meter()

    @staticmethod
    def build(
        scope: ConsumerScope, middlewares: Sequence[Middleware], handler: Callable[[Any], Any]
    ) -> ConsumerChain | None:
        """A chain, or None when no middleware is given (the zero-cost path)."""
        return ConsumerChain(scope, middlewares, handler) if middlewares else None

    # -- SettleHooks ------------------------------------------------------------------

    def ack(self, delivery: Delivery) -> None:
        delivery.settler.settle(delivery, _ACK)
        self.scope.acked += 1
        if self._ack_watchers:
            for watcher in self._ack_watchers:
                watcher(self.scope, delivery, _ACKED)

    def fail(self, delivery: Delivery, failure: Failure) -> None:
        self.fail_next(delivery, failure)

    # -- composing --------------------------------------------------------------------

    def _compose_nack(self) -> NackNext:
        call: NackNext = self._terminal
        scope = self.scope
        for middleware in reversed([m for m in self.middlewares if overrides(m, "nack")]):
            call = functools.partial(middleware.nack, scope, call_next=call)
        return call

    def _terminal(self, delivery: Delivery, failure: Failure) -> None:
        scope = self.scope
        disposition = settle_failure(delivery, failure, scope.consumer_id, scope.queue_id)
        if self._watchers:
            delay = failure.delay_s if disposition is Disposition.RETRY else None
            self._report(delivery, Settlement(disposition, failure.reason, delay))

    def _compose_handle(self, handler: Callable[[Any], Any]) -> HandleNext | None:
        users = [m for m in self.middlewares if overrides(m, "handle")]
        if not users:
            return None

        async def innermost(delivery: Delivery, payload: Any) -> Any:
            result = handler(payload)
            if type(result) is CoroutineType:
                result = await result
            return result

        call: HandleNext = innermost
        for middleware in reversed(users):
            call = functools.partial(middleware.handle, self.scope, call_next=call)
        return call

    def _compose_meter(self) -> Meter | None:
        """The pool's one meter: a middleware's, every middleware's, or None."""
        meters = [m for m in (w.meter(self.scope) for w in self.middlewares) if m is not None]
        if len(meters) <= 1:
            return meters[0] if meters else None
        return _Meters(meters)

    def _report(self, delivery: Delivery, settlement: Settlement) -> None:
        for watcher in self._watchers:
            watcher(self.scope, delivery, settlement)

    def busy(self) -> bool:
        return any(m.busy() for m in self.middlewares)

    async def drain(self) -> None:
        """Let every middleware finish work under way (a stopping consumer)."""
        drains = [m.drain() for m in self.middlewares if overrides(m, "drain")]
        if drains:
            await asyncio.gather(*drains, return_exceptions=True)


def _ignore(delivery: Delivery, settlement: Settlement) -> None:
    return None


class _Meters:
    """Several middlewares' meters behind one: each flush hands every one a copy."""

    def __init__(self, meters: list[Meter]) -> None:
        self.meters = meters
        self.spent: list[float] = []
        self.starts: list[float] = []
        self.headers: list[Headers] = []
        self.batch = min(m.batch for m in meters)

    def flush(self) -> None:
        for meter in self.meters:
            meter.spent.extend(self.spent)
            meter.starts.extend(self.starts)
            meter.headers.extend(self.headers)
            meter.flush()
        self.spent.clear()
        self.starts.clear()
        self.headers.clear()
