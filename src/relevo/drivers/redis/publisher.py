"""Publishing: concurrent publishes coalesced into pipelines of XADD (and of `delay.lua`
calls for delayed messages, one per publish, into the queue's sorted set).

One writer task keeps at most one pipeline in flight; every publish that arrives while it
is in flight joins the next one. A hundred concurrent callers therefore cost about one
round trip per hundred messages instead of one each, and one caller's envelopes still
land in order. When Redis is unreachable the writer retries with backoff; each caller
gives up on its own after `publish_timeout` with DriverUnavailable.

A queue with `max_length` takes `bounded.lua` instead of XADD: it adds what fits and
never trims; the rest waits for room, looked for again every 20 ms, and past
`publish_timeout` the caller gets QueueFull. A queue without it pays nothing for this.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from relevo.drivers.redis.connection import NETWORK_ERRORS, backoff_s, stop_task
from relevo.drivers.redis.fields import encode, pack_delayed
from relevo.drivers.redis.scripts import BOUNDED, DELAY
from relevo.drivers.redis.settings import RedisSettings
from relevo.errors import DriverUnavailable, PublishError, QueueFull, QueueNotFound
from relevo.message import Envelope

log = logging.getLogger("relevo.drivers.redis")

_ROOM_POLL_S = 0.02  # how soon a publish into a full bounded queue looks for room again

Redeclare = Callable[[str], Awaitable[bool]]
"""Declares a queue again if this driver declared it before (Redis came back empty)."""


class _Request:
    __slots__ = ("deadline", "delayed", "due", "entries", "full", "future", "max_length",
                 "queue", "stream")

    def __init__(
        self,
        queue: str,
        stream: str,
        max_length: int | None,
        entries: list[Any],
        future: asyncio.Future[None],
        deadline: float,
        delayed: str = "",
        due: float | None = None,
    ) -> None:
        self.queue = queue
        self.stream = stream
        self.max_length = max_length  # None: no bound, a plain XADD
        self.full = False  # the queue had no room for the rest at the last try
        # XADD field/value arguments, one tuple per envelope; or, with `due`, the
        # sorted-set members of `delayed`
        self.entries = entries
        self.future = future
        self.deadline = deadline
        self.delayed = delayed
        self.due = due


class Publisher:
    """The single writer behind `RedisDriver.publish`."""

    def __init__(self, client: Redis, settings: RedisSettings, redeclare: Redeclare) -> None:
        self.client = client
        self.settings = settings
        self._redeclare = redeclare
        self._pending: list[_Request] = []
        # Every unresolved request, oldest first. The timeout is the same for all, so the
        # oldest has the nearest deadline and one timer serves them all (a timer per
        # publish costs more than the rest of the publish path).
        self._outstanding: deque[_Request] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def publish(
        self, queue: str, stream: str, max_length: int | None, envelopes: Sequence[Envelope],
        delayed: str = "", due: float | None = None,
    ) -> None:
        """Store the envelopes in the stream, or with `due` in the sorted set `delayed`.

        With `max_length`, envelopes that find the stream full wait for room (tried again
        every few milliseconds) until the publish timeout, then QueueFull.
        """
        try:  # here, so an unencodable header fails its own publish, not a whole pipeline
            if due is None:
                entries: list[Any] = [encode(envelope) for envelope in envelopes]
            else:
                entries = [pack_delayed("p" + e.id, e) for e in envelopes]
        except (TypeError, ValueError, OverflowError) as exc:
            raise PublishError(f"redis publish to {queue!r}: bad headers: {exc}") from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        request = _Request(
            queue, stream, max_length, entries, future,
            loop.time() + self.settings.publish_timeout,
            delayed, due,
        )
        self._pending.append(request)
        outstanding = self._outstanding
        while outstanding and outstanding[0].future.done():
            outstanding.popleft()
        outstanding.append(request)
        if self._timer is None:
            self._timer = loop.call_at(request.deadline, self._expire)
        self._wake.set()
        if self._writer is None:
            self._writer = loop.create_task(self._write_loop(), name="relevo-redis-publish")
        await future

    def _expire(self) -> None:
        """Fail every request past its deadline; re-arm for the oldest one left."""
        self._timer = None
        outstanding = self._outstanding
        now = asyncio.get_running_loop().time()
        while outstanding and (outstanding[0].future.done() or outstanding[0].deadline <= now):
            request = outstanding.popleft()
            if request.future.done():
                continue
            if request.full:
                request.future.set_exception(QueueFull(
                    f"redis queue {request.queue!r} stayed full ({request.max_length} "
                    f"messages) for the publish timeout of {self.settings.publish_timeout}s"
                ))
            else:
                request.future.set_exception(DriverUnavailable(
                    f"redis publish to {request.queue!r} did not complete within the "
                    f"publish timeout of {self.settings.publish_timeout}s"
                ))
        if outstanding:
            self._timer = asyncio.get_running_loop().call_at(
                outstanding[0].deadline, self._expire
            )

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is not None:
            await stop_task(self._writer)
            self._writer = None
        for request in self._outstanding:
            if not request.future.done():
                request.future.set_exception(DriverUnavailable("redis driver stopped"))
        self._pending = []
        self._outstanding.clear()

    async def _write_loop(self) -> None:
        delays = None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch = [r for r in self._pending if not r.future.done()]
            self._pending = []
            if not batch:
                continue
            try:
                retry = await self._send(batch)
                delays = None
            except NETWORK_ERRORS as exc:
                retry = batch
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                log.warning("redis publish failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug or an unexpected reply: fail these, keep going
                log.exception("redis publish failed")
                retry = []
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(PublishError(f"redis publish: {exc}"))
            if retry:
                self._pending[:0] = retry

    def _bounded(self, request: _Request, added: int) -> None:
        """After `bounded.lua` added the first `added` entries: done, or wait for room."""
        del request.entries[:added]
        if not request.entries:
            request.future.set_result(None)
            return
        request.full = True
        asyncio.get_running_loop().call_later(_ROOM_POLL_S, self._again, request)

    def _again(self, request: _Request) -> None:
        if not request.future.done():
            self._pending.append(request)
            self._wake.set()

    async def _send(self, batch: list[_Request]) -> list[_Request]:
        """One pipeline for the whole batch; returns the requests to send again."""
        pipe = self.client.pipeline(transaction=False)
        command = pipe.execute_command
        for request in batch:
            if request.due is not None:
                DELAY.queue(pipe, [request.stream, request.delayed],
                            [repr(request.due), *request.entries])
                continue
            if request.max_length is not None:
                arguments: list[Any] = [request.max_length]
                for fields in request.entries:
                    arguments += (len(fields), *fields)
                BOUNDED.queue(pipe, [request.stream], arguments)
                continue
            head = ("XADD", request.stream, "NOMKSTREAM", "*")
            for fields in request.entries:
                command(*head, *fields)
        results = await pipe.execute(raise_on_error=False)
        retry: list[_Request] = []
        position = 0
        for request in batch:
            single = request.due is not None or request.max_length is not None
            count = 1 if single else len(request.entries)
            replies = results[position : position + count]
            position += count
            if request.future.done():
                continue
            failure = _failure(request, replies)
            if failure is None and request.max_length is not None:
                self._bounded(request, replies[0])
            elif failure is None:
                request.future.set_result(None)
            elif isinstance(failure, NoScriptError):  # Redis restarted: load it, send again
                await self.client.script_load(
                    DELAY.source if request.due is not None else BOUNDED.source
                )
                retry.append(request)
            elif isinstance(failure, QueueNotFound) and await self._redeclare(request.queue):
                retry.append(request)  # Redis came back empty: the queue exists again now
            else:
                request.future.set_exception(failure)
        return retry


def _failure(request: _Request, replies: list[Any]) -> Exception | None:
    scripted = request.due is not None or request.max_length is not None
    for reply in replies:
        if reply is None or (scripted and reply == -1):  # no stream
            return QueueNotFound(f"redis queue {request.queue!r} is not declared")
        if isinstance(reply, NoScriptError):
            return reply
        if isinstance(reply, Exception):
            return PublishError(f"redis refused a publish to {request.queue!r}: {reply}")
    return None
