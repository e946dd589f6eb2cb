"""What a reload must do: compare the running registry with a new one, entry by entry.

An entry changed when any of its fields did, or the content of a `file://` file it
names (a handler's source, a Lua chunk, a certificate), or, for a function, the
number of workers its consumers give it. What depends on a changed entry restarts
with it; everything else keeps running untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevo.registry import Entry, Registry

Fingerprints = dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Plan:
    added: list[str]
    removed: list[str]
    changed: list[str]
    restarted: list[str]  # the changed entries and everything that depends on them

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "restarted": self.restarted}


def referenced_files(entry: Entry) -> list[Path]:
    """The `file://` paths among an entry's settings (made absolute when loaded)."""
    return [Path(v.removeprefix("file://")) for v in _strings(entry.settings.model_dump())
            if v.startswith("file://")]


def fingerprints(registry: Registry) -> Fingerprints:
    """Everything about each entry that, when it changes, means restarting it."""
    workers: dict[str, int] = {}
    for consumer in registry.consumers():
        func = consumer.settings.func
        workers[func] = workers.get(func, 0) + consumer.settings.concurrency
    return {
        e.id: (e.kind, e.head, e.settings, e.dependencies, workers.get(e.id),
               tuple(_digest(p) for p in referenced_files(e)))
        for e in registry
    }


def plan(old: Fingerprints, registry: Registry, new: Fingerprints) -> Plan:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(i for i in new if i in old and old[i] != new[i])
    restarted = set(changed)
    for entry_id in changed:
        restarted |= registry.dependents(entry_id)
    return Plan(added, removed, changed, sorted(restarted - set(added)))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
