"""`relevo.testing.in_memory`: the same application with every broker swapped for memory."""

from __future__ import annotations

from dataclasses import replace

from relevo.app import App
from relevo.config.build import Source, load_registry
from relevo.config.checks import driver_short, merged_options
from relevo.drivers.memory_settings import (
    MemoryConsumerOptions,
    MemoryQueueOptions,
    MemorySettings,
)
from relevo.registry import Entry, Registry
from relevo.testing.clock import ManualClock

MEMORY = "queue.driver.memory"


def in_memory(source: Source) -> App:
    """Load `source` with each broker driver replaced by a memory driver of the same ID.

    Queues, consumers, functions, dead letters and retry policies stay as declared; a
    queue keeps its `max_length`, the one broker option with a meaning in memory. Nothing
    starts until `async with app`, and no broker is needed. `app.clock` is a manual
    clock: delays and retry backoff wait until the test calls `app.clock.advance(s)`.
    """
    return App(memory_registry(load_registry(source)), clock=ManualClock())


def memory_registry(registry: Registry) -> Registry:
    """A copy of `registry` whose drivers are all memory drivers."""
    entries = registry.entries
    swapped: dict[str, Entry] = {}
    for entry in entries.values():
        if entry.kind.startswith("queue.driver.") and entry.kind != MEMORY:
            settings = MemorySettings(publish_timeout=entry.settings.publish_timeout)
            swapped[entry.id] = replace(entry, kind=MEMORY, settings=settings)
        elif entry.kind == "queue.queue" and entries[entry.settings.driver].kind != MEMORY:
            swapped[entry.id] = _memory_queue(entries, entry)
        elif entry.kind == "queue.consumer" and driver_short(entries, entry) != "memory":
            swapped[entry.id] = replace(entry, options=MemoryConsumerOptions())
        else:
            swapped[entry.id] = entry
    return Registry(swapped)


def _memory_queue(entries: dict[str, Entry], entry: Entry) -> Entry:
    short = driver_short(entries, entry)
    options = merged_options(entry, short) if short is not None else {}
    memory = {"max_length": options["max_length"]} if options.get("max_length") else {}
    settings = entry.settings.model_copy(
        update={"options": {}, "driver_options": {"memory": memory}}
    )
    return replace(entry, settings=settings, options=MemoryQueueOptions.model_validate(memory))
