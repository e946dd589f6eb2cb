"""A queue entry at run time: checks headers, stamps IDs, encodes, hands envelopes to its driver."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from relevo.codecs import Codec
from relevo.drivers.base import ConnectionPublisher, Driver, Options, QueueSpec, QueueStats
from relevo.errors import PublishError
from relevo.message import RESERVED_PREFIX, Envelope, Headers
from relevo.middleware.base import Middleware, PublishNext
from relevo.middleware.chain import compose_publish


class _MessageIds:
    """Unique message IDs without a uuid per message: a random process prefix and a counter.

    The prefix is drawn again in a forked child, so two processes never share IDs.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex() + "-"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter)}"


message_ids = _MessageIds()

_HEADER_TYPES = (str, int, float, bool)


def check_headers(headers: Mapping[str, Any] | None) -> Headers | None:
    """A private copy of user headers, or PublishError naming the bad one."""
    if not headers:
        return None
    for key, value in headers.items():
        if not isinstance(key, str):
            raise PublishError(f"header names must be strings, got {key!r}")
        if key.startswith(RESERVED_PREFIX):
            raise PublishError(f"header {key!r}: names starting with 'x_' are reserved")
        if not isinstance(value, _HEADER_TYPES):
            raise PublishError(
                f"header {key!r}: values must be str, int, float or bool, "
                f"got {type(value).__name__}"
            )
    return dict(headers)


class Queue:
    """What publishers and consumers hold of a `queue.queue` entry."""

    def __init__(
        self,
        entry_id: str,
        name: str,
        driver: Driver,
        codec: Codec,
        options: Options,
        middlewares: Sequence[Middleware] = (),
    ) -> None:
        self.entry_id = entry_id
        self.name = name  # broker-side
        self.driver = driver
        self.codec = codec
        self.spec = QueueSpec(name, options if isinstance(options, BaseModel) else dict(options))
        self._middlewares = list(middlewares)
        # the `publish` hooks around the driver, composed once; None when there are none
        self._publish_chain: PublishNext | None = compose_publish(
            entry_id, middlewares, self._store
        )

    async def start(self) -> None:
        await self.driver.declare(self.spec)

    async def stop(self) -> None:
        """Nothing to release: the queue lives on in its driver."""

    async def publish(
        self, data: Any, headers: Mapping[str, Any] | None = None, connection: Any = None,
        due: float | None = None,
    ) -> str:
        """Store one message; with `due` (epoch seconds) it waits until then."""
        message_id = message_ids.next()
        envelopes = (Envelope(message_id, self._encode(data), check_headers(headers)),)
        if self._publish_chain is None and connection is None and due is None:
            await self.driver.publish(self.name, envelopes)
        else:
            await self._through_hooks(envelopes, due, connection)
        return message_id

    async def publish_batch(
        self, items: Iterable[Any], headers: Mapping[str, Any] | None = None,
        connection: Any = None, due: float | None = None,
    ) -> list[str]:
        """Publish many bodies in one driver call; all share `headers`."""
        checked = check_headers(headers)
        encode, next_id = self._encode, message_ids.next
        envelopes = [
            Envelope(next_id(), encode(item), dict(checked) if checked else None) for item in items
        ]
        if self._publish_chain is None and connection is None and due is None:
            await self.driver.publish(self.name, envelopes)
        else:
            await self._through_hooks(envelopes, due, connection)
        return [envelope.id for envelope in envelopes]

    async def _through_hooks(
        self, envelopes: Sequence[Envelope], due: float | None, connection: Any
    ) -> None:
        """Publish through the `publish` hooks, in the caller's transaction, delayed."""
        if due is not None and not self.driver.capabilities.delays:
            raise PublishError(
                f"{self.entry_id}: its driver cannot hold delayed messages (delay=, at=)"
            )
        if connection is None:
            await (self._publish_chain or self._store)(envelopes, due)
            return
        driver = self.driver
        if not isinstance(driver, ConnectionPublisher):
            raise PublishError(
                f"{self.entry_id}: connection= publishes inside a database transaction, "
                "which only queue.driver.postgres can do"
            )

        async def store(envelopes: Sequence[Envelope], due: float | None) -> None:
            await driver.publish_in(connection, self.name, envelopes, due)

        chain = compose_publish(self.entry_id, self._middlewares, store)  # a rare path
        await (chain or store)(envelopes, due)

    async def forward(self, envelopes: Sequence[Envelope]) -> None:
        """Publish envelopes as they are (the runtime's own moves, e.g. dead letters)."""
        await self.driver.publish(self.name, envelopes)

    async def _store(self, envelopes: Sequence[Envelope], due: float | None) -> None:
        """The innermost step of the `publish` hooks: hand the envelopes to the driver."""
        if due is None:
            await self.driver.publish(self.name, envelopes)
        else:
            await self.driver.publish(self.name, envelopes, due)

    async def stats(self) -> QueueStats:
        return await self.driver.info(self.name)

    def _encode(self, data: Any) -> bytes:
        try:
            return self.codec.encode(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PublishError(
                f"cannot encode the body for {self.entry_id} as {self.codec.name}: {exc}"
            ) from exc
