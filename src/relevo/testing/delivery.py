"""`relevo.testing.delivery`: call a handler as a plain function, with `relevo.message()` set."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from relevo.codecs import CODECS
from relevo.context import current_delivery
from relevo.message import Delivery, HeaderValue, Outcome
from relevo.queue import check_headers, message_ids


class TestDelivery(Delivery):
    """A delivery that remembers how the handler settled it, for assertions."""

    __slots__ = ("due", "outcome")
    __test__ = False  # not a pytest test class

    def __init__(self, body: bytes, headers: Mapping[str, HeaderValue] | None, attempts: int):
        super().__init__(_Recorder(), message_ids.next(), body, check_headers(headers), attempts)
        self.outcome: str | None = None  # "ack", "nack" or "release" once settled
        self.due: float | None = None  # epoch seconds of a delayed nack


class _Recorder:
    """The settler of one test delivery: records the outcome on the delivery itself.

    It settles in the thread that made it, the test's: call the handler from there.
    """

    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        if isinstance(delivery, TestDelivery):
            delivery.outcome = outcome.value
            delivery.due = due


@contextmanager
def delivery(
    body: Any, headers: Mapping[str, HeaderValue] | None = None, attempts: int = 1
) -> Iterator[TestDelivery]:
    """Inside the block `relevo.message()` returns a delivery with these values.

        with relevo.testing.delivery({"id": 7}, headers={"tenant": "a"}) as d:
            assert handler({"id": 7}) is None
        assert d.outcome is None  # the handler did not settle it itself

    `d.outcome` is "ack" or "nack" when the handler called `ack()`/`nack()`; the
    runtime's own settlement after the handler returns is not simulated.
    """
    encoded = body if isinstance(body, bytes) else CODECS["json/plain"].encode(body)
    found = TestDelivery(encoded, headers, attempts)
    token = current_delivery.set(found)
    try:
        yield found
    finally:
        current_delivery.reset(token)
