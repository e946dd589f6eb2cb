"""The application: loading one, and the API to open, drive and inspect it.

What it builds comes from `build.py`, its watchers from `observing.py`; what its
consumers are doing is read by `activity.py`; a reload is checked by `reloading.py`
before anything is swapped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextvars import Token
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from relevo import clock as relevo_clock
from relevo import dead_letters
from relevo.app import activity as activities
from relevo.app import reloading
from relevo.app.build import build
from relevo.app.observing import Observing
from relevo.clock import Clock, due_time
from relevo.config.build import Source, load_registry
from relevo.consumer.consumer import Consumer
from relevo.context import Runtime, current_runtime
from relevo.drivers.base import Driver, QueueStats
from relevo.errors import QueueNotFound, RelevoError
from relevo.middleware.base import Middleware
from relevo.queue import Queue
from relevo.registry import Entry, Registry
from relevo.reload.diff import Fingerprints, fingerprints
from relevo.supervisor.service import Supervised
from relevo.supervisor.status import Status
from relevo.supervisor.supervisor import Supervisor


def load(source: Source, *, middlewares: Sequence[Middleware] = ()) -> App:
    """Parse and validate an application. Nothing starts until `async with app`.

    `source` is a YAML file or folder, or a mapping shaped like one YAML file (its
    `function.python` entries may give `handler` as the callable itself), or a list of
    such mappings. `middlewares`: see `App`.
    """
    app = App(load_registry(source), middlewares=middlewares)
    if isinstance(source, str | Path):
        app.path = Path(source)
    return app


class App:
    """A loaded application: its entries, their services, and the API to drive them.

    `middlewares` wrap every queue's publishes and every consumer's handling and
    settlement, the first one outermost; entries of kinds that bring a middleware
    (`middleware/entries.py`) add theirs after these.
    """

    def __init__(
        self, registry: Registry, *, middlewares: Sequence[Middleware] = (),
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry
        self.middlewares: list[Middleware] = list(middlewares)
        # the time delays and retries go by; a clock given here (a test's manual clock)
        # is the one in use while the app is open
        self.clock: Clock = clock or relevo_clock.current()
        self._own_clock = clock is not None
        self._previous_clock: Clock | None = None
        self._observing = Observing(
            lambda: self.queues, lambda: self._drivers, lambda: sorted(self.registry.entries),
            self._is_running, self._in_flight,
        )
        self.serve_metrics = True  # False in a child process: its parent serves /metrics
        self._drivers: dict[str, Driver] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._token: Token[Runtime | None] | None = None
        self._supervisor: Supervisor | None = None  # kept after close, for status()
        self._open = False
        self._closing = False
        self.queues: dict[str, Queue] = {}
        self.path: Path | None = None  # the config path it was loaded from, for reload()
        self._prints: Fingerprints = {}

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open(start=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, *, start: bool = True) -> None:
        """Build the services; with `start`, start the auto_start entries and what they need.

        `start=False` opens the app publish-only: nothing starts until a publish needs a
        queue and its driver, and no consumer ever starts (`close()` when done).
        """
        if self._open:
            raise RelevoError("this app is already running")
        self.loop = asyncio.get_running_loop()
        self._prints = fingerprints(self.registry)
        if self._own_clock:
            self._previous_clock = relevo_clock.use(self.clock)
        self._supervisor = Supervisor(self.registry, self._build())
        self._open = True
        self._token = current_runtime.set(self)
        if start:
            auto = [e.id for e in self.registry if e.head.lifecycle.auto_start]
            try:
                await self._supervisor.start(auto)
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        """Stop everything, dependents first: every consumer, then the rest.

        Publishing keeps working until the last consumer has stopped, so a handler that
        publishes while the app shuts down (Ctrl-C) still succeeds; only then does the
        app count as closed.
        """
        if not self._open or self._closing:
            return
        self._closing = True
        assert self._supervisor is not None
        supervisor = self._supervisor
        consumers = [e.id for e in self.registry.consumers()]
        try:
            try:
                await supervisor.stop_first(consumers)
            finally:
                self._open = False
                await supervisor.stop_all(skip=consumers)
        finally:
            self._closing = False
            if self._previous_clock is not None:
                relevo_clock.use(self._previous_clock)
                self._previous_clock = None
            if self._token is not None:
                try:
                    current_runtime.reset(self._token)
                except ValueError:  # closed from another context than it was opened in
                    current_runtime.set(None)
                self._token = None

    @property
    def is_open(self) -> bool:
        """Between `open()` (or `async with`) and `close()`."""
        return self._open

    async def start(self, entry_id: str) -> None:
        await self._running().start([self._entry(entry_id).id])

    async def stop(self, entry_id: str) -> None:
        await self._running().stop([self._entry(entry_id).id])

    async def reload(self, path: str | Path | None = None) -> dict[str, list[str]]:
        """Apply a changed config to the running app: start added entries (per their
        lifecycle), stop removed ones, restart changed ones and their dependents; leave
        the rest running untouched. Returns the IDs `added`, `removed`, `restarted`.

        Raises ConfigError, changing nothing, when the new config is invalid or a new or
        changed function cannot load.
        """
        source = path if path is not None else self.path
        if source is None:
            raise RelevoError("reload() needs a path: this app was not loaded from one")
        registry = load_registry(source)
        supervisor = self._running()
        prints, todo = await reloading.prepare(registry, self._prints)
        keep = {i: supervisor.services[i] for i in registry.entries
                if i not in todo.added and i not in todo.restarted}

        def rebuild() -> tuple[Registry, dict[str, Supervised]]:
            self.registry, self._prints = registry, prints
            if path is not None:
                self.path = Path(path)
            return registry, self._build(keep)

        auto = [i for i in todo.added if registry[i].head.lifecycle.auto_start]
        await supervisor.replace([*todo.removed, *todo.restarted], rebuild, auto)
        return todo.as_dict()

    def processed(self) -> int:
        """Handler calls finished by this app's consumers (what process recycling counts)."""
        return 0 if self._supervisor is None else activities.processed(self._supervisor)

    def status(self, entry_id: str) -> str:
        self._entry(entry_id)
        if self._supervisor is None:
            return "unknown"
        return self._supervisor.status(entry_id).value

    # -- messages -------------------------------------------------------------------

    async def publish(
        self, queue_id: str, data: Any, headers: Mapping[str, Any] | None = None,
        *, connection: Any = None, delay: float | str | None = None,
        at: datetime | float | None = None,
    ) -> str:
        """Publish one message; returns its ID (the `.id` its handler will see).

        `connection`, a psycopg AsyncConnection, publishes inside its open transaction
        (postgres driver only): the message exists if and only if that transaction commits.
        `delay` (seconds or "30s") or `at` (an aware datetime or epoch seconds): the
        message waits in the driver's store and is not delivered before then.
        """
        due = due_time(delay, at)
        queue = await self._queue(queue_id)
        return await queue.publish(data, headers, connection, due)

    async def publish_batch(
        self, queue_id: str, items: Iterable[Any], headers: Mapping[str, Any] | None = None,
        *, connection: Any = None, delay: float | str | None = None,
        at: datetime | float | None = None,
    ) -> list[str]:
        """Publish many messages in one driver call; returns their IDs in order."""
        due = due_time(delay, at)
        queue = await self._queue(queue_id)
        return await queue.publish_batch(items, headers, connection, due)

    async def info(self, queue_id: str) -> dict[str, int]:
        """`message_count`, `ready`, `in_flight`, `consumer_count` (and `delayed`) of a queue.

        It never creates a queue on a broker: for a queue not running in this app, only
        its driver is started and asked, so a queue the broker does not have is
        QueueNotFound. (A memory queue is declared, as publishing would: it is in-process.)
        """
        queue = self._queue_named(queue_id)
        supervisor = self._running()
        driver_id = self.registry[queue_id].settings.driver
        if self.registry[driver_id].kind == "queue.driver.memory":
            await self._queue(queue_id)
        elif supervisor.services[queue_id].status is not Status.RUNNING:
            await supervisor.start([driver_id])
        return (await queue.stats()).as_dict()

    def queue_id(self, text: str) -> str:
        """The queue entry ID that `text` names: a full ID, or a bare name that exactly
        one namespace has (as the command line accepts). QueueNotFound otherwise."""
        return self.registry.queue_id(text)

    async def queue_stats(self, queue_id: str) -> QueueStats:
        """A queue's counts as the driver gives them, with `delayed` and `next_due`."""
        return await (await self._queue(queue_id)).stats()

    def consumer(self, entry_id: str) -> Consumer | None:
        """The consumer service of an entry, once the app is open (None before)."""
        if self._supervisor is None or entry_id not in self._supervisor.services:
            return None
        service = self._supervisor.services[entry_id].service
        return service if isinstance(service, Consumer) else None

    async def join(
        self, queue_id: str | None = None, timeout: float = 10.0  # noqa: ASYNC109 - as documented
    ) -> None:
        """Wait until the queue has nothing ready, in flight or delayed and due, and no
        handler of its consumers is running.

        Without `queue_id`, every queue a running consumer reads (a queue nobody consumes,
        such as a dead-letter queue, would never empty). Raises QueueNotFound for an unknown
        queue, TimeoutError (saying what is left) when that does not happen in `timeout` s.
        """
        supervisor = self._running()
        if queue_id is not None:
            queues = [self._queue_named(queue_id)]
        else:
            queues = [self.queues[q] for q in activities.consumed(supervisor)]
        await activities.join(supervisor, queues, self.clock, timeout)

    def activity(self) -> dict[str, dict[str, Any]]:
        """Each consumer's queue, status and counts: `handled` (handler calls finished),
        `failed` (since it last started), `in_flight` (in a handler now). What the live
        status shows."""
        assert self._supervisor is not None
        return activities.activity(self._supervisor)

    # -- inspection and dead letters --------------------------------------------------

    async def peek(
        self, queue_id: str, limit: int = 50, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Up to `limit` ready messages, oldest first, without consuming them.

        Each is `{"id", "body", "headers", "attempts"}`, the body decoded by the queue's
        codec; `after` is the ID of the last message of a previous page.
        """
        return await dead_letters.peek(await self._queue(queue_id), limit, after)

    async def requeue(self, dead_letter_queue_id: str, ids: Collection[str] | None = None) -> int:
        """Move dead letters back to their original queues; returns how many moved.

        Those that cannot go back (their queue no longer exists) stay, and are logged;
        `requeue_report` says why for each.
        """
        return (await self.requeue_report(dead_letter_queue_id, ids)).moved

    async def requeue_report(
        self, dead_letter_queue_id: str, ids: Collection[str] | None = None,
        *, after: str | None = None,
    ) -> dead_letters.RequeueReport:
        """`requeue`, answering how many moved and the reason each refused one stayed.

        `after` (with `ids`): start looking behind this message ID, e.g. the cursor of
        the page the IDs were shown on, so a deep page does not scan from the head.
        """
        dead = await self._queue(dead_letter_queue_id)
        return await dead_letters.requeue(dead, self._queue_if_any, ids, after)

    async def purge(self, queue_id: str) -> int:
        """Remove every ready message of a queue (not those in flight); returns how many."""
        queue = await self._queue(queue_id)
        return await queue.driver.purge(queue.name)

    async def _queue_if_any(self, queue_id: str) -> Queue | None:
        if queue_id not in self.queues:
            return None
        return await self._queue(queue_id)

    def _queue_named(self, queue_id: str) -> Queue:
        queue = self.queues.get(queue_id)
        if queue is None:
            raise QueueNotFound(f"no queue entry {queue_id!r}")
        return queue

    async def _queue(self, queue_id: str) -> Queue:
        queue = self._queue_named(queue_id)
        supervisor = self._running()
        if supervisor.services[queue_id].status is not Status.RUNNING:
            await supervisor.start([queue_id])  # publishing needs its queue and driver, only
            queue = self.queues.get(queue_id, queue)  # a reload may have replaced it meanwhile
        return queue

    def _running(self) -> Supervisor:
        if not self._open or self._supervisor is None:
            raise RelevoError("the app is not running; use `async with app:`")
        return self._supervisor

    def _entry(self, entry_id: str) -> Entry:
        try:
            return self.registry[entry_id]
        except KeyError:
            raise RelevoError(f"no entry {entry_id!r}") from None

    # -- building -------------------------------------------------------------------

    def _build(self, reuse: Mapping[str, Supervised] | None = None) -> dict[str, Supervised]:
        """A service per entry; those in `reuse` (a reload's unchanged ones) carry over.
        The app's own middlewares come first, then metrics and tracing when configured."""
        reuse = reuse or {}
        observing, endpoints = self._observing.middlewares(
            self.registry, reuse, serve=self.serve_metrics
        )
        built = build(
            self.registry, [*self.middlewares, *observing], self, made=endpoints, reuse=reuse
        )
        self._drivers, self.queues = built.drivers, built.queues
        return built.services

    def metrics_counted(self) -> dict[str, Any] | None:
        """This process's metric figures, without queue counts (None without a
        `metrics.prometheus` entry): what a child sends its parent, whose endpoint sums them."""
        return self._observing.counted()

    async def metrics_snapshot(self) -> dict[str, Any] | None:
        """`metrics_counted()` plus the queues' counts, read from their drivers."""
        return await self._observing.snapshot()

    def _in_flight(self) -> dict[str, int]:
        return {} if self._supervisor is None else activities.in_flight(self._supervisor)

    def _is_running(self, entry_id: str) -> bool:
        supervisor = self._supervisor
        return supervisor is not None and supervisor.status(entry_id) is Status.RUNNING
