"""Building services from a registry: a driver, queue, function and consumer per entry.

The only place that turns validated settings into running objects; an application
built twice from one registry (a reload) carries its unchanged services over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from relevo.app.functions import FunctionService
from relevo.app.located import located
from relevo.backoff import Backoff
from relevo.codecs import CODECS
from relevo.config.checks import driver_short, merged_options
from relevo.config.models import ConsumerSettings
from relevo.consumer.consumer import Consumer
from relevo.context import Runtime
from relevo.drivers.base import Driver
from relevo.drivers.catalog import DRIVER_KINDS
from relevo.errors import SettingError
from relevo.functions.base import Function
from relevo.functions.catalog import FUNCTION_KINDS
from relevo.ids import split
from relevo.middleware.base import Middleware
from relevo.middleware.dead_letter import DeadLetter
from relevo.middleware.entries import ENTRY_MIDDLEWARES
from relevo.middleware.retry import RetryPolicy
from relevo.queue import Queue
from relevo.registry import Entry, Registry
from relevo.supervisor.service import Service, Supervised


@dataclass
class Assembly:
    """What one registry builds into: its drivers and queues, and every entry's service."""

    drivers: dict[str, Driver] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)
    services: dict[str, Supervised] = field(default_factory=dict)


def build(
    registry: Registry, middlewares: Sequence[Middleware], runtime: Runtime, *,
    made: Mapping[str, Service], reuse: Mapping[str, Supervised],
) -> Assembly:
    """A service per entry. `made` are services already built (metrics endpoints);
    those in `reuse` (a reload's unchanged ones) carry over. `middlewares`, then those
    the entries bring in declared order, wrap every queue and consumer; `runtime` is
    what handlers reach."""
    middlewares = [
        *middlewares,
        *(ENTRY_MIDDLEWARES[e.kind](e.id, e.settings) for e in registry
          if e.kind in ENTRY_MIDDLEWARES),
    ]
    built = Assembly()
    drivers, queues = built.drivers, built.queues
    services: dict[str, Service] = dict(made)
    for entry in registry.of_kind("queue.driver."):
        if entry.id in reuse:
            drivers[entry.id] = cast(Driver, reuse[entry.id].service)
        else:
            try:
                drivers[entry.id] = DRIVER_KINDS[entry.kind].create(entry.settings)
            except SettingError as exc:
                raise located(exc, entry) from exc
        services[entry.id] = drivers[entry.id]
    for entry in registry.queues():
        if entry.id not in reuse:
            queues[entry.id] = _queue(registry, entry, drivers, middlewares)
        else:
            queues[entry.id] = cast(Queue, reuse[entry.id].service)
        services[entry.id] = queues[entry.id]
    functions = _functions(registry, services, reuse)
    for entry in registry.consumers():
        if entry.id in reuse:
            services[entry.id] = reuse[entry.id].service
            continue
        services[entry.id] = _consumer(
            registry, entry, queues, functions[entry.settings.func], middlewares, runtime
        )
    for entry_id, service in services.items():
        lifecycle = registry[entry_id].head.lifecycle
        built.services[entry_id] = reuse.get(entry_id) or Supervised(
            entry_id, service,
            start_timeout_s=lifecycle.start_timeout, stop_timeout_s=lifecycle.stop_timeout,
            backoff=_backoff(registry[entry_id]), is_driver=entry_id in drivers,
        )
    return built


def _queue(
    registry: Registry, entry: Entry, drivers: Mapping[str, Driver],
    middlewares: Sequence[Middleware],
) -> Queue:
    settings = entry.settings
    short = driver_short(registry.entries, entry)
    assert short is not None
    return Queue(
        entry.id, settings.queue_name or split(entry.id)[1], drivers[settings.driver],
        CODECS[settings.codec],
        entry.options if entry.options is not None else merged_options(entry, short),
        middlewares,
    )


def _functions(
    registry: Registry, services: dict[str, Service], reuse: Mapping[str, Supervised]
) -> dict[str, Function]:
    """Each function entry's function, its service added to `services`; a function gets
    as many workers as its consumers' concurrency adds up to."""
    workers = {e.id: 0 for e in registry.of_kind("function.")}
    for entry in registry.consumers():
        workers[entry.settings.func] += entry.settings.concurrency
    functions: dict[str, Function] = {}
    for entry in registry.of_kind("function."):
        if entry.id in reuse:
            service = cast(FunctionService, reuse[entry.id].service)
            functions[entry.id], services[entry.id] = service.function, service
            continue
        function = FUNCTION_KINDS[entry.kind].create(entry.id, entry.settings, workers[entry.id])
        functions[entry.id] = function
        services[entry.id] = FunctionService(function, entry)
    return functions


def _consumer(
    registry: Registry, entry: Entry[ConsumerSettings], queues: Mapping[str, Queue],
    function: Function, app_middlewares: Sequence[Middleware], runtime: Runtime,
) -> Consumer:
    """A consumer with the app's middlewares, then its queue's dead letter and retry
    policy, nearest the driver."""
    settings = entry.settings
    queue = queues[settings.queue]
    queue_entry = registry[settings.queue]
    middlewares = list(app_middlewares)
    dead_letter = queue_entry.settings.dead_letter
    if dead_letter is not None:
        middlewares.append(
            DeadLetter(queue.entry_id, queues[dead_letter.queue], dead_letter.max_attempts)
        )
    retry = queue_entry.settings.retry
    if retry is not None:
        middlewares.append(RetryPolicy(
            Backoff(retry.initial_delay, retry.max_delay, retry.factor, retry.jitter)
        ))
    short = driver_short(registry.entries, entry)
    return Consumer(
        entry.id, queue, function,
        concurrency=settings.concurrency, prefetch=settings.prefetch,
        auto_ack=settings.auto_ack,
        options=(entry.options if entry.options is not None
                 else settings.driver_options.get(short or "", {})),
        stop_timeout_s=entry.head.lifecycle.stop_timeout,
        middlewares=middlewares, runtime=runtime,
    )


def _backoff(entry: Entry) -> Backoff:
    restart = entry.head.lifecycle.restart
    return Backoff(
        restart.initial_delay, restart.max_delay, restart.backoff_factor,
        restart.jitter, restart.max_attempts,
    )
