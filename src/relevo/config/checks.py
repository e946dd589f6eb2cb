"""Checks across entries: references resolve to the right kinds, options fit their driver."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from relevo.config.explain import explain
from relevo.drivers.catalog import DRIVER_KINDS
from relevo.registry import Entry

Report = Callable[[Entry, str | None, str], None]
"""report(entry, field, message)"""

_EXPECTED = {
    "driver": ("queue.driver.", "a driver (queue.driver.*)"),
    "dead_letter.queue": ("queue.queue", "a queue (queue.queue)"),
    "queue": ("queue.queue", "a queue (queue.queue)"),
    "func": ("function.", "a function (function.*)"),
}


def check_references(
    entries: dict[str, Entry], report: Report, invalid: Collection[str] = ()
) -> None:
    """Report references to missing entries or entries of the wrong kind. A reference to
    an entry in `invalid` (declared, but with errors of its own) is not reported again."""

    def expect(entry: Entry, field: str, ref: str) -> None:
        if ref not in invalid:
            _expect(entries, entry, field, ref, report)

    for entry in list(entries.values()):
        settings = entry.settings
        if entry.kind == "queue.queue":
            expect(entry, "driver", settings.driver)
            if settings.dead_letter is not None:
                target = settings.dead_letter.queue
                expect(entry, "dead_letter.queue", target)
                if target == entry.id:
                    report(entry, "dead_letter.queue", "a queue cannot dead-letter into itself")
            _type_driver_options(entries, entry, "queue_options", report)
        elif entry.kind == "queue.consumer":
            expect(entry, "queue", settings.queue)
            expect(entry, "func", settings.func)
            _type_driver_options(entries, entry, "consumer_options", report)
        elif entry.kind.startswith("function.") and getattr(settings, "source", None):
            path = Path(settings.source.removeprefix("file://"))
            if not path.is_file():
                report(entry, "source", f"file not found: {path}")
        for dep in entry.depends_on:
            if dep not in entries and dep not in invalid:
                report(entry, "lifecycle.depends_on", f"no entry {dep!r}")


def _expect(entries: dict[str, Entry], entry: Entry, field: str, ref: str, report: Report) -> None:
    prefix, description = _EXPECTED[field]
    target = entries.get(ref)
    if target is None:
        report(entry, field, f"no entry {ref!r}; expected {description}")
    elif not target.kind.startswith(prefix):
        report(entry, field, f"{ref!r} is a {target.kind}; expected {description}")


def driver_short(entries: dict[str, Entry], entry: Entry) -> str | None:
    """The driver_options key ('memory', 'amqp', 'redis') that applies to a queue or consumer."""
    queue = entries.get(entry.settings.queue) if entry.kind == "queue.consumer" else entry
    if queue is None or queue.kind != "queue.queue":
        return None
    driver = entries.get(queue.settings.driver)
    kind = DRIVER_KINDS.get(driver.kind) if driver is not None else None
    return kind.short if kind is not None else None


def merged_options(entry: Entry, short: str) -> dict[str, Any]:
    """`options` (queues only) overlaid by `driver_options.<short>`."""
    base = dict(getattr(entry.settings, "options", {}))
    return base | dict(entry.settings.driver_options.get(short, {}))


def _type_driver_options(
    entries: dict[str, Entry], entry: Entry, which: str, report: Report
) -> None:
    """Validate the entry's options for its driver kind, once, and keep the typed model
    on the entry (`Entry.options`): the driver gets it as it is."""
    shorts = {kind.short: kind for kind in DRIVER_KINDS.values()}
    for key in entry.settings.driver_options:
        if key not in shorts:
            report(entry, f"driver_options.{key}", f"unknown driver; allowed: {', '.join(shorts)}")
    short = driver_short(entries, entry)
    if short is None:
        return
    model: type[BaseModel] = getattr(shorts[short], which)
    try:
        options = model.model_validate(merged_options(entry, short))
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(["driver_options", short, *(str(p) for p in error["loc"])])
            report(entry, field, explain(error, model))
        return
    entries[entry.id] = replace(entry, options=options)
