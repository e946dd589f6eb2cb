"""Publishing: concurrent publishes to one queue coalesced into one INSERT.

Each queue has at most one statement in flight. A publish that finds none writes its
own batch, in its own task; publishes that arrive meanwhile wait and go together in the
next statement, which a writer task sends (their envelopes in arrival order, each
caller's in its own order). A hundred handlers publishing one message each therefore
cost about one round trip and one commit per hundred messages, not one each; a lone
publisher pays no task, no future and no hand-off. Each caller gives up on its own
after `publish_timeout` (DriverUnavailable)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgpack
import psycopg
from psycopg_pool import AsyncConnectionPool

from relevo.drivers.postgres.boundary import on_connection
from relevo.drivers.postgres.queries import Queries
from relevo.drivers.postgres.settings import PostgresSettings
from relevo.errors import DriverUnavailable, PublishError, QueueNotFound
from relevo.message import Envelope


class Rows:
    """The columns of a batch of envelopes, as the publish statement takes them."""

    __slots__ = ("attempts", "bodies", "dues", "headers", "ids")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.bodies: list[bytes] = []
        self.headers: list[bytes | None] = []
        self.attempts: list[int] = []
        self.dues: list[float | None] = []

    def add(self, queue: str, envelopes: Sequence[Envelope], due: float | None) -> None:
        """Append envelopes; PublishError (and nothing appended) for unencodable headers."""
        try:
            headers = [msgpack.packb(e.headers) if e.headers else None for e in envelopes]
        except (TypeError, ValueError, OverflowError) as exc:
            raise PublishError(f"cannot encode headers for {queue!r}: {exc}") from exc
        self.headers += headers
        self.ids += [e.id for e in envelopes]
        self.bodies += [e.body for e in envelopes]
        self.attempts += [e.attempts for e in envelopes]
        self.dues += [due] * len(envelopes)

    def params(self, queue: str, queries: Queries) -> dict[str, Any]:
        """The statement's parameters. A column with nothing in it (no headers, no
        attempts, no due time: the common batch) goes as NULL, not as an array of
        defaults: `unnest` pads it, and the batch costs two arrays instead of five."""
        return {"queue": queue, "channel": queries.channel, "ids": self.ids,
                "bodies": self.bodies,
                "headers": self.headers if any(self.headers) else None,
                "attempts": self.attempts if any(self.attempts) else None,
                "dues": None if self.dues.count(None) == len(self.dues) else self.dues}


class Publisher:
    """The statements behind `PostgresDriver.publish`: at most one in flight per queue."""

    def __init__(
        self, pool: AsyncConnectionPool, queries: Queries, settings: PostgresSettings
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.settings = settings
        self._busy: set[str] = set()  # queues with a statement in flight
        self._pending: dict[str, list[tuple[Rows, asyncio.Future[None]]]] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._closed = False

    async def publish(self, queue: str, envelopes: Sequence[Envelope], due: float | None) -> None:
        rows = Rows()
        rows.add(queue, envelopes, due)
        if self._closed:
            raise DriverUnavailable("postgres driver stopped")
        if queue in self._busy:
            await self._join(queue, rows)
            return
        # Nothing in flight for this queue: the caller writes its own batch (no task, no
        # future); publishes arriving meanwhile queue up and go together after it.
        self._busy.add(queue)
        try:
            await self._write(queue, rows)
        finally:
            self._hand_over(queue)

    async def _join(self, queue: str, rows: Rows) -> None:
        """Wait for the writer to store `rows` with the next batch of `queue`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(queue, []).append((rows, future))
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                # Cancelled on timeout: a writer that has not taken the rows yet leaves
                # them out; one that has may still store them (the caller may publish
                # again: at least once).
                await future
        except TimeoutError:
            raise DriverUnavailable(
                f"postgres publish to {queue!r} did not complete within the publish "
                f"timeout of {self.settings.publish_timeout}s"
            ) from None

    def _hand_over(self, queue: str) -> None:
        """The statement in flight for `queue` is done: what queued behind it goes next."""
        if queue in self._pending and not self._closed:
            task = asyncio.get_running_loop().create_task(
                self._write_loop(queue), name=f"relevo-pg-publish:{queue}"
            )
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        else:
            self._busy.discard(queue)

    async def close(self) -> None:
        """Stop the writers; publishes still waiting fail with DriverUnavailable. A
        publish writing its own batch, in its caller's task, is left to finish."""
        self._closed = True
        for task in list(self._writers):
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        for batch in self._pending.values():
            for _, future in batch:
                if not future.done():
                    future.set_exception(DriverUnavailable("postgres driver stopped"))
        self._pending.clear()

    async def _write_loop(self, queue: str) -> None:
        try:
            while batch := self._pending.pop(queue, None):
                waiting = [(rows, future) for rows, future in batch if not future.done()]
                if not waiting:
                    continue
                merged = waiting[0][0]
                for rows, _ in waiting[1:]:
                    merged.ids += rows.ids
                    merged.bodies += rows.bodies
                    merged.headers += rows.headers
                    merged.attempts += rows.attempts
                    merged.dues += rows.dues
                try:
                    await self._write(queue, merged)
                except BaseException as exc:
                    for _, future in waiting:
                        if not future.done():
                            future.set_exception(
                                exc if isinstance(exc, Exception)
                                else DriverUnavailable("postgres driver stopped")
                            )
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, future in waiting:
                        if not future.done():
                            future.set_result(None)
                if queue not in self._pending:
                    # The callers just answered run first: those that publish again at
                    # once join the next statement here, rather than the first of them
                    # writing a statement of its own and the rest queueing behind it.
                    await asyncio.sleep(0)
        finally:
            self._busy.discard(queue)

    async def _write(self, queue: str, rows: Rows) -> None:
        """One INSERT. Retried on a fresh connection when the server dropped the one it
        had (see on_connection): a retried batch may be stored twice, never lost."""
        params = rows.params(queue, self.queries)

        async def insert(conn: psycopg.AsyncConnection[Any]) -> int:
            return (await conn.execute(self.queries.publish, params)).rowcount

        stored = await on_connection(self.pool, f"publish to {queue!r}",
                                     self.settings.publish_timeout, insert)
        if stored == 0:
            raise QueueNotFound(f"postgres queue {queue!r} is not declared")
