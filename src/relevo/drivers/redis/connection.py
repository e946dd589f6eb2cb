"""The redis-py client as relevo configures it: no hidden retries, TLS, backoff.

redis-py retries failed commands on its own by default; relevo turns that off so the
driver decides when to wait and when to give up (publish_timeout, reconnect backoff),
and so a command is never silently sent twice.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import logging
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from relevo.backoff import Backoff
from relevo.drivers.client_logs import quiet_connection_events
from relevo.drivers.redis.settings import RedisSettings
from relevo.drivers.settings import TlsSettings
from relevo.drivers.tls import ssl_context

log = logging.getLogger("relevo.drivers.redis")

# The driver reports every outage itself ("redis read on ... failed; retrying").
quiet_connection_events(
    ["redis", "redis.asyncio.connection", "redis.asyncio.client", "redis.connection"],
    errors=(OSError, EOFError, ConnectionError, TimeoutError),
)

NETWORK_ERRORS = (ConnectionError, TimeoutError, OSError)
"""What a lost or unreachable Redis raises: retried with backoff, never a failure."""

READ_MARGIN_S = 10.0
"""How much longer than a blocking read a socket read may take before it counts as dead."""


def create_client(settings: RedisSettings) -> Redis:
    """A client whose socket timeouts outlast a blocking XREADGROUP of `settings.block`."""
    options: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": min(settings.publish_timeout, 5.0),
        "socket_timeout": settings.block + READ_MARGIN_S,
        "socket_keepalive": True,
        "decode_responses": False,
    }
    url = settings.url
    if settings.tls.enabled:
        # relevo's own context (CA, client pair, server_name, insecure_skip_verify), the
        # same as the AMQP driver's; on a plain redis:// URL so redis-py keeps our class.
        options["connection_class"] = tls_connection_class(settings.tls)
        if url.startswith("rediss://"):
            url = "redis://" + url.removeprefix("rediss://")
    client: Redis = Redis.from_url(url, **options)
    return client


class TlsConnection(Connection):
    """A redis-py connection whose socket is wrapped in `context`."""

    context: ssl.SSLContext

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        arguments["ssl"] = self.context
        return arguments


def tls_connection_class(tls: TlsSettings) -> type[TlsConnection]:
    """A TlsConnection class bound to the context `tls` describes (SettingError if unusable)."""
    return type("RelevoTlsConnection", (TlsConnection,), {"context": ssl_context(tls)})


async def warn_if_volatile(client: Redis, settings: RedisSettings) -> None:
    """Log a warning when the server keeps nothing on disk (no AOF, no RDB snapshots):
    its next restart loses every message in every queue; and one when it may evict any
    key under memory pressure, a whole queue's stream included. Each once per process
    and server. A server that refuses CONFIG (managed Redis, ACLs) is not second-guessed."""
    try:
        async with asyncio.timeout(settings.publish_timeout):
            pipe = client.pipeline(transaction=False)
            pipe.config_get("appendonly")
            pipe.config_get("save")
            pipe.config_get("maxmemory-policy")
            appendonly, save, policy = await pipe.execute()
    except (RedisError, OSError) as exc:  # OSError: the builtin TimeoutError too
        log.debug("redis persistence settings not readable: %s", exc)
        return
    aof, snapshots = _text(appendonly.get("appendonly")), _text(save.get("save"))
    if aof == "no" and snapshots == "" and _first_time(settings.url, "volatile"):
        log.warning(
            "redis at %s keeps nothing on disk (appendonly no, save \"\"): a Redis restart "
            "loses every message in its queues; set appendonly yes (see docs/production.md)",
            safe_url(settings.url),
        )
    eviction = _text(policy.get("maxmemory-policy")) or ""
    if eviction.startswith("allkeys") and _first_time(settings.url, "evicting"):
        log.warning(
            "redis at %s has maxmemory-policy %s: when memory runs out it may evict a "
            "queue's stream, every message in it; set noeviction (see docs/production.md)",
            safe_url(settings.url), eviction,
        )


_warned: set[tuple[str, str]] = set()


def _first_time(url: str, warning: str) -> bool:
    """Whether this process has not yet given `warning` about the server at `url`: every
    driver and every restart of one checks, and one warning says it all."""
    if (url, warning) in _warned:
        return False
    _warned.add((url, warning))
    return True


def safe_url(url: str) -> str:
    """The URL for logs, password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def backoff_s(settings: RedisSettings) -> Iterator[float]:
    """Delays between reconnect attempts: reconnect_delay doubling up to
    reconnect_max_delay, with jitter, so processes that lost Redis together spread out."""
    backoff = Backoff(settings.reconnect_delay, settings.reconnect_max_delay, 2.0, 0.1)
    for attempt in itertools.count(1):
        yield backoff.delay_s(attempt)


class Outage:
    """Shared by the tasks of one subscription: a task that failed waits its backoff, or
    less once another task reached Redis again, so all resume together."""

    __slots__ = ("_reached",)

    def __init__(self) -> None:
        self._reached = asyncio.Event()

    def failed(self) -> None:
        """A call just failed: from now on, only a call that goes through wakes `pause`.
        Said at once, before anything is awaited, so that another task reaching Redis
        while this one drops its connections still cuts this one's pause short."""
        self._reached.clear()

    async def pause(self, delay: float) -> None:
        """Wait `delay` before retrying, or less if another task reached Redis since this
        one `failed`."""
        with contextlib.suppress(builtins.TimeoutError):  # not redis' TimeoutError
            async with asyncio.timeout(delay):
                await self._reached.wait()

    def ended(self) -> None:
        """A call went through after a failure: the tasks pausing retry now."""
        self._reached.set()


async def drop_idle_connections(client: Redis) -> None:
    """Close the pool's idle connections after a network error: when Redis restarted,
    every one of them is dead, and each would otherwise fail its next command once more
    (one more warning, one more backoff step) before the pool opened a fresh one."""
    with contextlib.suppress(Exception):
        await client.connection_pool.disconnect(inuse_connections=False)


async def stop_task(task: asyncio.Task[None], timeout_s: float = 2.0) -> None:
    """Cancel a task and wait for it, boundedly: loops also check a flag, in case a client
    library turns the cancellation into a connection error and it is swallowed."""
    if task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        log.warning("redis task %s still runs %.0fs after its cancellation; left behind",
                    task.get_name(), timeout_s)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("redis task %s ended with %r", task.get_name(), task.exception())
