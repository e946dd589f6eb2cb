"""`queue.driver.amqp`: RabbitMQ through aio-pika, reconnecting, confirmed, never losing a message.

aio-pika opens (and TLS-wraps) the connection; the driver then talks AMQP on aio-pika's
own transport channels (aiormq) so that a delivery costs one `Delivery` and nothing
else. The pieces, one concept each:

    connection.py    the connection and its reconnect loop (AmqpLink)
    publisher.py     confirmed, mandatory, persistent publishing on a shared channel
    subscription.py  one consumer: qos, consume, resubscribe, close
    ack_window.py    which ack frames a consumer sends, batched, never past an unsettled tag
    republisher.py   attempts via republish: the copy is stored before the original is acked
    browse.py        peek and remove by borrowing messages and giving them back
    delays.py        delayed messages: a ladder of wait queues per queue, in the broker
    queues.py        queue options as AMQP arguments; declare conflicts as BrokerConflict
    headers.py       envelope headers <-> AMQP properties and header table
    ../tls.py        the SSL context from `tls:` (shared with the Redis driver)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiormq

from relevo.drivers.amqp.browse import Browser
from relevo.drivers.amqp.connection import AmqpLink, close_quietly, dropped_link_fails, log
from relevo.drivers.amqp.delays import Ladders
from relevo.drivers.amqp.headers import properties_for
from relevo.drivers.amqp.publisher import Publisher
from relevo.drivers.amqp.queues import (
    conflict_error,
    declare_arguments,
    queue_boundary,
    queue_options,
)
from relevo.drivers.amqp.settings import AmqpConsumerOptions, AmqpSettings
from relevo.drivers.amqp.subscription import AmqpSubscription
from relevo.drivers.base import Capabilities, DeliverySink, QueueSpec, QueueStats
from relevo.drivers.settings import Options, typed_options
from relevo.errors import PublishError, QueueNotFound, RelevoError
from relevo.message import Envelope

_MAX_QOS = 65535
_IN_TRANSIT_PAUSES_S = (0.02, 0.05, 0.0)  # info() reads an empty ladder up to three times


class AmqpDriver:
    """`queue.driver.amqp`."""

    capabilities = Capabilities(
        durable=True, exact_in_flight=False, quiet_peek=False,
        delays=True, bounded=True,
    )

    def __init__(self, settings: AmqpSettings | None = None) -> None:
        self.settings = settings or AmqpSettings()
        self._link = AmqpLink(self.settings, self._connection_lost, self._connection_restored)
        self._publisher = Publisher(self._link)
        self._browser = Browser(self._link, self.settings.connection_timeout)
        self._ladders = Ladders(self._control_channel, self._publisher)
        self._control: aiormq.Channel | None = None
        self._control_lock = asyncio.Lock()
        self._declared: dict[str, dict[str, Any]] = {}  # re-declared after a reconnect
        self._known: set[str] = set()  # queues seen to exist (declared here or elsewhere)
        self._subscriptions: list[AmqpSubscription] = []

    # -- lifecycle ----------------------------------------------------------------


    @property
    def reconnects(self) -> int:
        """Connections restored after a loss (for metrics)."""
        return self._link.reconnects

    async def start(self) -> None:
        await self._link.start()

    async def stop(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        await self._publisher.close()
        control, self._control = self._control, None
        await close_quietly(control)
        await self._link.stop()
        self._known.clear()

    def _connection_lost(self) -> None:
        self._publisher.reset()
        self._control = None
        for sub in list(self._subscriptions):
            sub.connection_lost()

    async def _connection_restored(self) -> None:
        """Re-declare every queue (a broker restart drops non-durable ones) before consuming.

        A queue the broker now refuses (re-declared elsewhere with other arguments) is
        logged and skipped: it must not keep the whole driver disconnected.
        """
        channel = await self._link.restoring_channel()
        for name, arguments in self._declared.items():
            try:
                await channel.queue_declare(name, **arguments)
                await self._ladders.rebind(channel, name)
            except aiormq.exceptions.ChannelClosed as exc:
                log.error("AMQP queue %r cannot be declared again: %s", name, exc)
                channel = await self._link.restoring_channel()
        self._control = channel

    # -- queues -------------------------------------------------------------------

    async def declare(self, spec: QueueSpec) -> None:
        arguments = declare_arguments(queue_options(spec.options), self.settings)
        await self._declare(spec.name, arguments)

    @contextlib.asynccontextmanager
    async def _boundary(self, what: str, queue: str) -> AsyncIterator[None]:
        """Where the driver's own broker calls (declare, count, purge) become relevo's
        errors, within `connection_timeout`: a 404 is QueueNotFound, a lost link or a
        timeout DriverUnavailable (`queue_boundary`), a 406 a BrokerConflict. Each of
        them closes the control channel, so it is opened again on the next call."""

        def failed(error: RelevoError) -> None:
            self._control = None
            if isinstance(error, QueueNotFound):
                self._known.discard(queue)

        with queue_boundary(what, queue, failed):
            try:
                async with asyncio.timeout(self.settings.connection_timeout):
                    yield
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                self._control = None
                raise conflict_error(queue, _reply_text(exc)) from None

    async def _declare(self, name: str, arguments: dict[str, Any]) -> None:
        channel = await self._control_channel()
        async with self._boundary("declare", name):
            await channel.queue_declare(name, **arguments)
            await self._ladders.rebind(channel, name)
        self._declared[name] = arguments
        self._known.add(name)

    async def info(self, queue: str) -> QueueStats:
        for pause_s in _IN_TRANSIT_PAUSES_S:
            delayed = await self._delayed(queue)  # first: delayed messages move into the queue
            ok = await self._passive_declare(queue)
            in_flight = sum(sub.in_flight for sub in self._subscriptions if sub.queue == queue)
            if delayed or ok.message_count or in_flight or not self._ladders.known(queue):
                break
            # Nothing anywhere, yet the queue has a ladder: a message in the middle of a
            # dead-letter transfer, or delivered but not yet arrived here, is counted by
            # neither end for a few ms. Look again.
            await asyncio.sleep(pause_s)
        return QueueStats(ok.message_count or 0, in_flight, ok.consumer_count or 0, delayed)

    async def _delayed(self, queue: str) -> int:
        """Messages in the queue's delay ladder (best effort across processes: see Ladders)."""
        deadline = asyncio.get_running_loop().time() + self.settings.connection_timeout
        async with self._boundary("count delayed messages of", queue):
            count = await self._ladders.count(
                queue, lambda: self._link.channel(deadline, confirms=False)
            )
        return count

    async def _passive_declare(self, queue: str) -> aiormq.spec.Queue.DeclareOk:
        channel = await self._control_channel()
        async with self._boundary("query", queue):
            ok = await channel.queue_declare(queue, passive=True)
        self._known.add(queue)
        return ok

    async def _control_channel(self) -> aiormq.Channel:
        """A channel for declares; a 404 or 406 closes it, so it is reopened on demand."""
        channel = self._control
        if channel is not None and not channel.is_closed:
            return channel
        async with self._control_lock:
            channel = self._control
            if channel is None or channel.is_closed:
                deadline = asyncio.get_running_loop().time() + self.settings.connection_timeout
                with dropped_link_fails("cannot open an AMQP channel"):
                    channel = await self._link.channel(deadline, confirms=False)
                self._control = channel
            return channel

    async def _redeclare(self, queue: str) -> None:
        """Declare again a queue this driver declared (it was deleted on the broker)."""
        arguments = self._declared.get(queue)
        if arguments is not None:
            await self._declare(queue, arguments)

    def _forget(self, sub: AmqpSubscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    # -- messages -----------------------------------------------------------------

    async def publish(
        self, queue: str, envelopes: Sequence[Envelope], due: float | None = None
    ) -> None:
        if queue not in self._known:
            await self._passive_declare(queue)
        now = datetime.now(UTC)
        try:
            messages = [(properties_for(envelope, now), envelope.body) for envelope in envelopes]
        except (TypeError, ValueError) as exc:
            raise PublishError(f"cannot encode a message for AMQP queue {queue!r}: {exc}") from exc
        deadline = asyncio.get_running_loop().time() + self.settings.publish_timeout
        if due is not None and due > time.time():
            await self._ladders.publish(queue, messages, due - time.time(), deadline)
            return
        await self._publisher.publish(queue, messages, deadline)

    async def attach(
        self, queue: str, sink: DeliverySink, prefetch: int, options: Options
    ) -> AmqpSubscription:
        if queue not in self._known:
            await self._passive_declare(queue)
        qos = max(1, min(prefetch, self.settings.prefetch_count or _MAX_QOS, _MAX_QOS))
        sub = AmqpSubscription(
            self._link,
            self._publisher,
            queue,
            sink,
            qos,
            _consumer_options(options),
            self.settings.publish_timeout,
            self._forget,
            self._redeclare,
            self._ladders,
        )
        deadline = asyncio.get_running_loop().time() + self.settings.connection_timeout
        await sub.start(deadline)
        self._subscriptions.append(sub)
        return sub


    # -- inspection: see browse.py for how AMQP is read without consuming --------------

    async def peek(self, queue: str, limit: int, after: str | None = None) -> list[Envelope]:
        return await self._browser.peek(queue, limit, after)

    async def remove(self, queue: str, ids: Sequence[str]) -> int:
        return await self._browser.remove(queue, set(ids))

    async def purge(self, queue: str) -> int:
        channel = await self._control_channel()
        async with self._boundary("purge", queue):
            ok = await channel.queue_purge(queue)
        return int(ok.message_count or 0)


def _consumer_options(options: Options) -> AmqpConsumerOptions:
    return typed_options(AmqpConsumerOptions, options)


def _reply_text(exc: BaseException) -> str:
    return " ".join(str(arg) for arg in exc.args) or str(exc)

