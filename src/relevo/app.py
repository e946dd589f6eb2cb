"""The composition root: the one module that builds every layer from a registry."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextvars import Token
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from relevo import clock as relevo_clock
from relevo import dead_letters
from relevo.backoff import Backoff
from relevo.clock import Clock, due_time
from relevo.codecs import CODECS
from relevo.config.build import Source, load_registry
from relevo.config.checks import driver_short, merged_options
from relevo.config.models import ConsumerSettings
from relevo.consumer.consumer import Consumer
from relevo.context import Runtime, current_runtime
from relevo.drivers.base import Driver, QueueStats
from relevo.drivers.catalog import DRIVER_KINDS
from relevo.errors import (
    ConfigError,
    ConfigIssue,
    LoadError,
    QueueNotFound,
    RelevoError,
    SettingError,
)
from relevo.functions.base import Function
from relevo.functions.catalog import FUNCTION_KINDS
from relevo.functions.python import forget_file
from relevo.ids import split
from relevo.middleware.base import Middleware
from relevo.middleware.dead_letter import DeadLetter
from relevo.middleware.entries import ENTRY_MIDDLEWARES
from relevo.middleware.retry import RetryPolicy
from relevo.queue import Queue
from relevo.registry import Entry, Registry
from relevo.reload.diff import Fingerprints, fingerprints, plan, referenced_files
from relevo.supervisor.service import Service, Supervised
from relevo.supervisor.status import Status
from relevo.supervisor.supervisor import Supervisor
from relevo.tracing.install import tracing_middleware


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
        self._metrics: Any = None  # the metrics middleware, with an app-long set of figures
        self._metrics_sources: Any = None
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
        prints = fingerprints(registry)
        todo = plan(self._prints, registry, prints)
        for entry_id in todo.changed:  # handler files are imported once: read them again
            if registry[entry_id].kind == "function.python":
                for file in referenced_files(registry[entry_id]):
                    forget_file(file)
        await check_functions(registry, {*todo.added, *todo.changed})
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
        if self._supervisor is None:
            return 0
        return sum(s.service.processed for s in self._supervisor.services.values()
                   if isinstance(s.service, Consumer))

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
        queues = [e.id for e in self.registry.queues()]
        if text in queues:
            return text
        if ":" not in text:
            found = sorted(q for q in queues if split(q)[1] == text)
            if len(found) == 1:
                return found[0]
            if found:
                raise QueueNotFound(f"{text!r} is ambiguous: {', '.join(found)}; give the full ID")
        known = ", ".join(sorted(queues)) or "none"
        raise QueueNotFound(f"no queue entry {text!r}; queues: {known}")

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
        self._running()
        if queue_id is not None:
            queues = [self._queue_named(queue_id)]
        else:
            consumed = {c.queue.entry_id for c in self._consumers() if c.running}
            queues = [self.queues[q] for q in sorted(consumed)]
        left: dict[str, Any] = {}
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = await self._unfinished(queues)
            if not left:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(f"join: after {timeout}s still {left}")
            await asyncio.sleep(_JOIN_POLL_S)

    async def _unfinished(self, queues: list[Queue]) -> dict[str, Any]:
        """What each queue still holds or runs, by queue ID; empty once all is done."""
        left: dict[str, Any] = {}
        now = self.clock.time()
        for queue in queues:
            stats = await queue.stats()
            due = stats.next_due is not None and stats.next_due <= now
            busy = [c.entry_id for c in self._consumers_of(queue.entry_id) if not c.idle]
            if stats.ready or stats.in_flight or due or busy:
                left[queue.entry_id] = {**stats.as_dict(), "due": due, "busy": busy}
        return left

    def activity(self) -> dict[str, dict[str, Any]]:
        """Each consumer's queue, status and counts: `handled` (handler calls finished),
        `failed` (since it last started), `in_flight` (in a handler now). What the live
        status shows."""
        assert self._supervisor is not None
        found = {}
        for consumer in self._consumers():
            handled, failed, running = consumer.activity()
            found[consumer.entry_id] = {
                "queue": consumer.queue.entry_id, "status": self.status(consumer.entry_id),
                "handled": handled, "failed": failed, "in_flight": running,
            }
        return found

    def _consumers(self) -> list[Consumer]:
        assert self._supervisor is not None
        return [
            s.service for s in self._supervisor.services.values() if isinstance(s.service, Consumer)
        ]

    def _consumers_of(self, queue_id: str) -> list[Consumer]:
        return [c for c in self._consumers() if c.queue.entry_id == queue_id]

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
        """A service per entry; those in `reuse` (a reload's unchanged ones) carry over."""
        reuse = reuse or {}
        entries = self.registry.entries
        drivers: dict[str, Driver] = {}
        functions: dict[str, Function] = {}
        services: dict[str, Service] = {}
        self._drivers = drivers
        middlewares = self._app_middlewares(services, reuse)
        for entry in self.registry.of_kind("queue.driver."):
            if entry.id in reuse:
                drivers[entry.id] = cast(Driver, reuse[entry.id].service)
            else:
                try:
                    drivers[entry.id] = DRIVER_KINDS[entry.kind].create(entry.settings)
                except SettingError as exc:
                    raise _located(exc, entry) from exc
            services[entry.id] = drivers[entry.id]
        queues: dict[str, Queue] = {}
        self.queues = queues
        for entry in self.registry.queues():
            if entry.id in reuse:
                queues[entry.id] = services[entry.id] = cast(Queue, reuse[entry.id].service)
                continue
            settings = entry.settings
            short = driver_short(entries, entry)
            assert short is not None
            self.queues[entry.id] = Queue(
                entry.id, settings.queue_name or split(entry.id)[1], drivers[settings.driver],
                CODECS[settings.codec],
                entry.options if entry.options is not None else merged_options(entry, short),
                middlewares,
            )
            services[entry.id] = self.queues[entry.id]
        workers = {e.id: 0 for e in self.registry.of_kind("function.")}
        for entry in self.registry.consumers():
            workers[entry.settings.func] += entry.settings.concurrency
        for entry in self.registry.of_kind("function."):
            if entry.id in reuse:
                service = cast(_FunctionService, reuse[entry.id].service)
                functions[entry.id], services[entry.id] = service.function, service
                continue
            kind = FUNCTION_KINDS[entry.kind]
            function = kind.create(entry.id, entry.settings, workers[entry.id])
            functions[entry.id] = function
            services[entry.id] = _FunctionService(function, entry)
        for entry in self.registry.consumers():
            if entry.id in reuse:
                services[entry.id] = reuse[entry.id].service
                continue
            services[entry.id] = self._consumer(
                entry, functions[entry.settings.func], middlewares
            )
        return {
            entry_id: reuse.get(entry_id) or Supervised(
                entry_id, service,
                start_timeout_s=self.registry[entry_id].head.lifecycle.start_timeout,
                stop_timeout_s=self.registry[entry_id].head.lifecycle.stop_timeout,
                backoff=_backoff(self.registry[entry_id]),
                is_driver=entry_id in drivers,
            )
            for entry_id, service in services.items()
        }

    def _app_middlewares(
        self, services: dict[str, Service], reuse: Mapping[str, Supervised]
    ) -> list[Middleware]:
        """The app's own middlewares, then metrics and tracing when configured, then those
        its entries bring, in declared order."""
        observing: list[Middleware] = []
        if self.registry.of_kind("metrics."):
            from relevo.metrics.install import install  # loads prometheus-client

            # one set of figures for the app's life: a reload keeps counting in them
            self._metrics, self._metrics_sources, endpoints = install(
                self.registry, self._metrics, lambda: self.queues, lambda: self._drivers,
                lambda: sorted(self.registry.entries), self._is_running, self._in_flight,
                serve=self.serve_metrics,
            )
            observing.append(self._metrics)
            for entry_id, endpoint in endpoints.items():
                services[entry_id] = reuse[entry_id].service if entry_id in reuse else endpoint
        tracing = tracing_middleware(self.registry)
        if tracing is not None:
            observing.append(tracing)
        added = [
            ENTRY_MIDDLEWARES[entry.kind](entry.id, entry.settings)
            for entry in self.registry
            if entry.kind in ENTRY_MIDDLEWARES
        ]
        return [*self.middlewares, *observing, *added]

    def metrics_counted(self) -> dict[str, Any] | None:
        """This process's metric figures, without queue counts (None without a
        `metrics.prometheus` entry): what a child sends its parent, whose endpoint sums them."""
        sources = self._metrics_sources
        return None if sources is None else dict(sources.counted())

    async def metrics_snapshot(self) -> dict[str, Any] | None:
        """`metrics_counted()` plus the queues' counts, read from their drivers."""
        sources = self._metrics_sources
        return None if sources is None else dict(await sources.collect())

    def _in_flight(self) -> dict[str, int]:
        if self._supervisor is None:
            return {}
        return {c.entry_id: c.activity()[2] for c in self._consumers()}

    def _is_running(self, entry_id: str) -> bool:
        supervisor = self._supervisor
        return supervisor is not None and supervisor.status(entry_id) is Status.RUNNING

    def _consumer(
        self, entry: Entry[ConsumerSettings], function: Function,
        app_middlewares: Sequence[Middleware],
    ) -> Consumer:
        settings = entry.settings
        queue = self.queues[settings.queue]
        queue_entry = self.registry[settings.queue]
        middlewares = list(app_middlewares)
        dead_letter = queue_entry.settings.dead_letter
        if dead_letter is not None:
            middlewares.append(
                DeadLetter(queue.entry_id, self.queues[dead_letter.queue], dead_letter.max_attempts)
            )
        retry = queue_entry.settings.retry
        if retry is not None:
            middlewares.append(RetryPolicy(
                Backoff(retry.initial_delay, retry.max_delay, retry.factor, retry.jitter)
            ))
        short = driver_short(self.registry.entries, entry)
        return Consumer(
            entry.id, queue, function,
            concurrency=settings.concurrency, prefetch=settings.prefetch,
            auto_ack=settings.auto_ack,
            options=(entry.options if entry.options is not None
                     else settings.driver_options.get(short or "", {})),
            stop_timeout_s=entry.head.lifecycle.stop_timeout,
            middlewares=middlewares, runtime=self,
        )


_JOIN_POLL_S = 0.002


class _FunctionService:
    def __init__(self, function: Function, entry: Entry) -> None:
        self.function = function
        self.entry = entry

    async def start(self) -> None:
        try:
            await self.function.load()
        except RelevoError as exc:
            raise _located(exc, self.entry) from exc

    async def stop(self) -> None:
        await self.function.close()


async def check_functions(registry: Registry, only: Collection[str] | None = None) -> None:
    """Import every Python handler and compile every Lua source, then let them go.

    What `relevo validate` does unless told `--no-import`: nothing starts, and a
    function that cannot load is a ConfigError naming its entry's file and line.
    `only` limits it to those entries (a reload checks its new and changed ones).
    """
    issues: list[ConfigIssue] = []
    for entry in registry.of_kind("function."):
        if only is not None and entry.id not in only:
            continue
        service = _FunctionService(FUNCTION_KINDS[entry.kind].create(entry.id, entry.settings, 1),
                                   entry)
        try:
            await service.start()
        except ConfigError as exc:
            issues.extend(exc.issues)
        else:
            await service.stop()
    if issues:
        raise ConfigError(issues)


def _located(error: RelevoError, entry: Entry) -> ConfigError:
    """A function's load error, or a driver's unusable setting, as a config issue at its
    entry's file and line."""
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, SettingError):
        return ConfigError([ConfigIssue(entry.file, entry.line, entry.id, error.field,
                                        error.reason)])
    field = error.field if isinstance(error, LoadError) else "source"
    message = str(error).removeprefix(f"{entry.id}: ")
    return ConfigError([ConfigIssue(entry.file, entry.line, entry.id, field, message)])


def _backoff(entry: Entry) -> Backoff:
    restart = entry.head.lifecycle.restart
    return Backoff(
        restart.initial_delay, restart.max_delay, restart.backoff_factor,
        restart.jitter, restart.max_attempts,
    )
