"""The redis-py client as relevo configures it: no hidden retries, TLS, backoff.

redis-py retries failed commands on its own by default; relevo turns that off so the
driver decides when to wait and when to give up (publish_timeout, reconnect backoff),
and so a command is never silently sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relevo.drivers.redis.settings import RedisSettings
from relevo.drivers.settings import TlsSettings

logger = logging.getLogger("relevo.drivers.redis")

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
    if settings.tls.enabled:
        options |= _tls_options(settings.tls)
    client: Redis = Redis.from_url(settings.url, **options)
    return client


def _tls_options(tls: TlsSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"ssl": True}
    if tls.insecure_skip_verify:
        options |= {"ssl_cert_reqs": "none", "ssl_check_hostname": False}
    if tls.ca:
        if _is_pem(tls.ca):
            options["ssl_ca_data"] = tls.ca
        else:
            options["ssl_ca_certs"] = _path(tls.ca)
    if tls.cert:
        options["ssl_certfile"] = _pem_file(tls.cert)
    if tls.key:
        options["ssl_keyfile"] = _pem_file(tls.key)
    return options


def _is_pem(value: str) -> bool:
    return "-----BEGIN" in value


def _path(value: str) -> str:
    return value.removeprefix("file://")


def _pem_file(value: str) -> str:
    """redis-py takes client certificates as paths only: inline PEM goes to a private file."""
    if not _is_pem(value):
        return _path(value)
    fd, path = tempfile.mkstemp(prefix="relevo-redis-", suffix=".pem")
    with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
        handle.write(value)
    return path


def backoff_s(settings: RedisSettings) -> Iterator[float]:
    """Delays between reconnect attempts: reconnect_delay doubling up to reconnect_max_delay."""
    delay = settings.reconnect_delay
    while True:
        yield delay
        delay = min(delay * 2, settings.reconnect_max_delay)


async def stop_task(task: asyncio.Task[None], timeout_s: float = 2.0) -> None:
    """Cancel a task and wait for it, boundedly: loops also check a flag, in case a client
    library turns the cancellation into a connection error and it is swallowed."""
    if task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=timeout_s)
    if task.done() and not task.cancelled() and task.exception() is not None:
        logger.warning("redis task %s ended with %r", task.get_name(), task.exception())
