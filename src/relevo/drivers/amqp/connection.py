"""One AMQP connection kept alive: connect, notice the drop, reconnect with backoff.

`AmqpLink.ready` is set while a connection is usable. When the connection drops,
the link clears it, tells its owner (`on_lost`), and reconnects: the first attempt
after `reconnect_delay`, each failure doubling the wait up to `reconnect_max_delay`
(relevo's `Backoff`, with its +/-10% jitter so many workers do not reconnect in step).
Once connected it runs `on_restored` (re-declare queues) before setting `ready`, so
consumers waiting on `ready` re-subscribe to queues that exist again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import aio_pika
import aiormq
import aiormq.abc
from yarl import URL

from relevo.backoff import Backoff
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.client_logs import quiet_connection_events
from relevo.drivers.tls import ssl_context
from relevo.errors import DriverUnavailable

log = logging.getLogger("relevo.drivers.amqp")

CONNECT_ERRORS = (
    OSError,  # includes TimeoutError and ConnectionError
    aiormq.exceptions.AMQPError,
    RuntimeError,  # aiormq's ChannelInvalidStateError, and "connection closed" on channel()
)
"""What a connection, channel or frame can fail with when the broker goes away.

A drop means one of three things, each said by one helper: the call fails
(`dropped_link_fails`; `queues.queue_boundary` for a call on a queue, where a 404 is
QueueNotFound), or the frame no longer matters because the broker gives back what the
channel held and the reconnect resubscribes (`unless_dropped`), or a channel being
closed is gone already (`close_quietly`). The publisher and the reconnect loop retry
instead, and catch `CONNECT_ERRORS` where they decide to.
"""


@contextlib.contextmanager
def dropped_link_fails(what: str) -> Iterator[None]:
    """A call that cannot wait for the reconnect: a drop (or a timeout) is DriverUnavailable."""
    try:
        yield
    except CONNECT_ERRORS as exc:
        raise DriverUnavailable(f"{what}: {exc}") from exc


async def unless_dropped(frame: Awaitable[object]) -> bool:
    """Send a frame that needs no answer; False if the channel or the link is gone.

    Nothing is lost then: the broker gives back every delivery the channel held unacked.
    """
    try:
        await frame
    except CONNECT_ERRORS:
        return False
    return True


async def close_quietly(channel: aiormq.abc.AbstractChannel | None) -> None:
    """Close a channel on the way out; one that died with the link is closed already."""
    if channel is not None and not channel.is_closed:
        await unless_dropped(channel.close())


_CLOSE_NOTICE_S = 0.005

# aiormq logs a broker-side close at ERROR and the dropped reader at WARNING with its
# traceback; AmqpLink says what happened in one line of its own ("connection lost").
quiet_connection_events(
    ["aiormq.connection", "aiormq.channel", "aio_pika", "aio_pika.connection",
     "aio_pika.channel", "aio_pika.robust_connection", "aio_pika.queue", "aio_pika.message"],
    errors=(OSError, EOFError),  # aiormq's connection errors are ConnectionErrors
    messages=("Unexpected connection close from remote", "error when creating transport"),
)


def connection_url(settings: AmqpSettings) -> URL:
    """The broker URL with vhost, heartbeat and TLS scheme applied from the settings."""
    url = URL(settings.url)
    if settings.vhost is not None:
        url = url.with_path("/" + settings.vhost.replace("/", "%2F"), encoded=True)
    if settings.heartbeat is not None:
        seconds = 0 if settings.heartbeat == 0 else max(1, round(settings.heartbeat))
        url = url.update_query(heartbeat=str(seconds))  # 0 turns heartbeats off
    if settings.tls.enabled and url.scheme == "amqp":
        port = url.explicit_port
        url = url.with_scheme("amqps").with_port(port if port is not None else 5671)
    return url


def reconnect_backoff(settings: AmqpSettings) -> Backoff:
    """Waits between reconnect attempts: from `reconnect_delay`, doubling, capped, +/-10%."""
    return Backoff(
        initial_delay_s=settings.reconnect_delay,
        max_delay_s=max(settings.reconnect_delay, settings.reconnect_max_delay),
    )


def safe_url(url: URL) -> str:
    """The URL for logs and errors, password hidden."""
    return str(url.with_password("***") if url.password else url)


class AmqpLink:
    """The driver's connection and its reconnect loop."""

    def __init__(
        self,
        settings: AmqpSettings,
        on_lost: Callable[[], None],
        on_restored: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.url = connection_url(settings)
        self.backoff = reconnect_backoff(settings)
        self.ready = asyncio.Event()
        self.connection: aiormq.abc.AbstractConnection | None = None
        self._aio_connection: aio_pika.abc.AbstractConnection | None = None
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._reconnecting: asyncio.Task[None] | None = None
        self.reconnects = 0  # connections restored after a loss (for metrics)
        self._stopping = True  # until start(): callers fail at once instead of waiting
        self._ssl = (
            ssl_context(settings.tls)
            if settings.tls.enabled or self.url.scheme == "amqps"
            else None
        )

    async def start(self) -> None:
        """Connect once; DriverUnavailable when the broker does not answer in time."""
        self._stopping = False
        try:
            await self._connect()
        except CONNECT_ERRORS as exc:
            raise DriverUnavailable(
                f"cannot connect to RabbitMQ at {safe_url(self.url)}: {_describe(exc)}"
            ) from exc
        self.ready.set()

    async def stop(self) -> None:
        self._stopping = True
        self.ready.clear()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        connection, self._aio_connection, self.connection = self._aio_connection, None, None
        if connection is not None:
            with contextlib.suppress(*CONNECT_ERRORS):
                await connection.close()

    async def wait_ready(self, deadline: float | None) -> aiormq.abc.AbstractConnection:
        """The live connection, waiting for a reconnect up to `deadline` (loop time)."""
        while True:
            connection = self.connection
            if self.ready.is_set() and connection is not None and not connection.is_closed:
                return connection
            if self._stopping:
                raise DriverUnavailable("the AMQP driver is stopped")
            try:
                async with asyncio.timeout_at(deadline):
                    if self.ready.is_set():
                        # Closed, but its close callback has not run yet: let it run.
                        await asyncio.sleep(_CLOSE_NOTICE_S)
                    else:
                        await self.ready.wait()
            except TimeoutError:
                raise DriverUnavailable(
                    f"RabbitMQ at {safe_url(self.url)} stayed unreachable"
                ) from None

    async def channel(self, deadline: float | None, *, confirms: bool) -> aiormq.Channel:
        """A new channel on the live connection (waiting for a reconnect up to `deadline`)."""
        connection = await self.wait_ready(deadline)
        async with asyncio.timeout_at(deadline):
            channel = await connection.channel(publisher_confirms=confirms)
        return cast(aiormq.Channel, channel)

    async def restoring_channel(self) -> aiormq.Channel:
        """A channel for `on_restored`, which runs before `ready` is set again."""
        if self.connection is None or self.connection.is_closed:
            raise aiormq.exceptions.AMQPConnectionError("the connection dropped while restoring")
        async with asyncio.timeout(self.settings.connection_timeout):
            channel = await self.connection.channel(publisher_confirms=False)
        return cast(aiormq.Channel, channel)

    async def _connect(self) -> None:
        properties: dict[str, Any] = {}
        if self.settings.connection_name:
            properties["connection_name"] = self.settings.connection_name
        connection = await aio_pika.connect(
            self.url,
            ssl_context=self._ssl,
            timeout=self.settings.connection_timeout,
            client_properties=properties or None,
        )
        connection.close_callbacks.add(self._closed)
        self._aio_connection = connection
        self.connection = connection.transport.connection  # type: ignore[union-attr]

    def _closed(self, _sender: object, exc: BaseException | None = None) -> None:
        if self._stopping:
            return
        log.warning("AMQP connection lost (%s); reconnecting", _describe(exc))
        self.ready.clear()
        self.connection = None
        self._aio_connection = None
        self._on_lost()
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 1
        delay = self.backoff.delay_s(attempt)
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._connect()
                await self._on_restored()
            except CONNECT_ERRORS as exc:
                attempt += 1
                delay = self.backoff.delay_s(attempt)
                log.warning("AMQP reconnect failed (%s); next try in %.1fs", _describe(exc), delay)
                await self._drop_half_open()
                continue
            if self.connection is None or self.connection.is_closed:
                continue  # lost again while restoring; its close callback took over
            log.info("AMQP connection restored to %s", safe_url(self.url))
            self.reconnects += 1
            self.ready.set()
            return

    async def _drop_half_open(self) -> None:
        connection, self._aio_connection, self.connection = self._aio_connection, None, None
        if connection is not None:
            connection.close_callbacks.discard(self._closed)
            with contextlib.suppress(*CONNECT_ERRORS):
                await connection.close()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
