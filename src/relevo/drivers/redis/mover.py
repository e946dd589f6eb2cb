"""The mover: brings delayed messages of this driver's queues into their streams when due.

One task per driver runs `promote.lua` for every queue the driver declared or attached
to. It sleeps until the earliest due time it knows of (what the script reports, or what
this process just delayed, which wakes it), and never longer than `POLL_S`, so messages
other processes delay are moved on time too. Any number of processes may run movers on
the same queues: the script moves each message once. When Redis is unreachable the
mover backs off and starts again with the driver's reconnect backoff, like the readers.
A due message whose queue no longer exists is logged and kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relevo.drivers.redis.connection import NETWORK_ERRORS, backoff_s, stop_task
from relevo.drivers.redis.scripts import PROMOTE
from relevo.drivers.redis.settings import RedisSettings

log = logging.getLogger("relevo.drivers.redis")

POLL_S = 0.05
"""The longest the mover sleeps: how late a message delayed by another process may be."""
BATCH = 1000
"""Members moved per script call: a backlog is moved in short atomic steps."""
LOST_QUEUE_LOG_S = 60.0
"""How often a due message waiting for a queue that no longer exists is logged again."""


class Mover:
    def __init__(
        self, client: Redis, settings: RedisSettings, keys: Callable[[str], tuple[str, str]]
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = keys  # queue -> (stream key, delayed key)
        self.queues: set[str] = set()
        self._wake = asyncio.Event()
        self._next_due = 0.0  # the earliest due time known, epoch seconds
        self._lost_logged: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # the loop checks it too, as a cancellation can be swallowed

    def watch(self, queue: str) -> None:
        """Move this queue's delayed messages from now on (a declared or attached queue)."""
        if queue not in self.queues:
            self.queues.add(queue)
            self.wake(0.0)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="relevo-redis-mover"
            )

    def wake(self, due: float) -> None:
        """A message due at `due` was delayed here: wake up for it if that is sooner."""
        if due < self._next_due:
            self._next_due = due
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await stop_task(self._task)
            self._task = None

    async def promote(self, queue: str) -> float | None:
        """Move what is due in `queue` now; the next due time left, if any."""
        stream, delayed = self.keys(queue)
        while True:
            moved, first = await PROMOTE.run(self.client, [stream, delayed], [BATCH])
            if moved == -1:  # checked again at the next poll, not in a busy loop
                self._report_lost(queue)
                return None
            if moved < BATCH:
                return float(first) if first else None

    async def _run(self) -> None:
        delays = None
        while not self._closing:
            try:
                soonest = time.time() + POLL_S
                for queue in list(self.queues):
                    due = await self.promote(queue)
                    if due is not None:
                        soonest = min(soonest, due)
                delays = None
            except Exception as exc:  # never dies: an outage or a bug, it starts again
                if self._closing:  # a cancellation the client turned into an error
                    return
                delays = delays or backoff_s(self.settings)
                delay = next(delays)
                expected = isinstance(exc, (ResponseError, *NETWORK_ERRORS))
                log.warning("redis mover of delayed messages failed (%s); starting again "
                               "in %.2fs", exc, delay, exc_info=None if expected else exc)
                soonest = time.time() + delay
            self._next_due = soonest
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, soonest - time.time())):
                    await self._wake.wait()

    def _report_lost(self, queue: str) -> None:
        now = time.monotonic()
        if now - self._lost_logged.get(queue, -LOST_QUEUE_LOG_S) >= LOST_QUEUE_LOG_S:
            self._lost_logged[queue] = now
            log.warning("redis queue %r no longer exists: its due delayed messages are "
                           "kept until it is declared again", queue)
