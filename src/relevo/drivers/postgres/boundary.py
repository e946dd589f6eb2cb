"""The one place where psycopg's exceptions become relevo's.

Lost or refused connections, a pool with no connection to give and timeouts are
`DriverUnavailable`; anything else the server refuses is `DriverUnavailable` too (it
names the statement), except where a caller's own transaction is at fault, which is
`PublishError`. Loops that retry by themselves ask `transient()` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relevo.errors import DriverUnavailable, PublishError, RelevoError

T = TypeVar("T")

TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError)
"""Errors a retry may cure: the server or the network went away, or the pool is empty."""


def transient(exc: BaseException) -> bool:
    return isinstance(exc, (*TRANSIENT, TimeoutError))


@contextlib.contextmanager
def translated(what: str, *, callers_transaction: bool = False) -> Iterator[None]:
    """Turn psycopg errors raised inside into relevo's, naming `what` was being done."""
    try:
        yield
    except RelevoError:
        raise
    except (TimeoutError, *TRANSIENT) as exc:
        raise DriverUnavailable(f"postgres {what} failed: {exc or 'timed out'}") from exc
    except psycopg.Error as exc:
        if callers_transaction:
            raise PublishError(f"postgres {what} refused in the caller's transaction: "
                               f"{exc}") from exc
        raise DriverUnavailable(f"postgres {what} refused: {exc}") from exc


@contextlib.asynccontextmanager
async def bounded(what: str, timeout_s: float) -> AsyncIterator[None]:
    """`translated`, and a deadline: nothing the driver is asked to do hangs."""
    with translated(what):
        async with asyncio.timeout(timeout_s):
            yield


@contextlib.asynccontextmanager
async def pooled(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection, put back as it is. `pool.connection()` also commits (or
    rolls back) on the way out, a round of locking per statement that the driver's
    autocommit connections do not need: their transactions are `conn.transaction()`
    blocks, closed by those, and the pool rolls back or replaces a connection that
    comes back in any other state."""
    conn = await pool.getconn()
    try:
        yield conn
    finally:
        await pool.putconn(conn)


async def on_connection(
    pool: AsyncConnectionPool,
    what: str,
    timeout_s: float,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
) -> T:
    """Run `work` on a pooled connection, errors translated, within `timeout_s`.

    A pooled connection the server closed (a restart, a failover, an idle timeout) fails
    on first use; `work` then runs again on a fresh one, with short backoff, until the
    deadline. So `work` must be safe to repeat: every statement the driver retries is.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.05
    with translated(what):
        while True:
            try:
                async with asyncio.timeout_at(deadline), pooled(pool) as conn:
                    return await work(conn)
            except Exception as exc:
                if not transient(exc) or pool.closed or loop.time() + delay >= deadline:
                    raise  # a closed pool is the driver stopping: no retry brings it back
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
