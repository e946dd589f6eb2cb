"""Validated entries and the order they start and stop in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, cast

from pydantic import BaseModel
from typing_extensions import TypeVar

from relevo.errors import QueueNotFound
from relevo.ids import split

if TYPE_CHECKING:
    from relevo.config.models import ConsumerSettings, EntryHead, QueueSettings

S = TypeVar("S", bound=BaseModel, default=Any)


@dataclass(frozen=True)
class Entry(Generic[S]):
    """One validated entry: where it was written, its common head and kind settings.

    `Entry[QueueSettings]` says which model `settings` is (`Registry.queues()` gives
    those); a bare `Entry`, of a kind not known where it is used, has settings `Any`.
    """

    id: str
    kind: str
    file: str
    line: int | None
    head: EntryHead
    settings: S  # the kind's model (QueueSettings, AmqpSettings, PythonSettings, ...)
    references: tuple[str, ...] = ()  # full IDs named by its fields (driver, queue, func, ...)
    depends_on: tuple[str, ...] = ()  # full IDs from lifecycle.depends_on / requires
    # A queue's or consumer's options for its driver kind (AmqpQueueOptions, ...), typed
    # and validated once by the config checks; the app hands this model to the driver.
    options: BaseModel | None = None

    @property
    def dependencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.references + self.depends_on))


@dataclass
class Registry:
    """All entries of an application, by ID."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def __getitem__(self, entry_id: str) -> Entry:
        return self.entries[entry_id]

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def of_kind(self, prefix: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.kind.startswith(prefix)]

    def queues(self) -> list[Entry[QueueSettings]]:
        return cast("list[Entry[QueueSettings]]", self.of_kind("queue.queue"))

    def consumers(self) -> list[Entry[ConsumerSettings]]:
        return cast("list[Entry[ConsumerSettings]]", self.of_kind("queue.consumer"))

    def queue_id(self, text: str) -> str:
        """The queue entry ID that `text` names: a full ID, or a bare name that exactly
        one namespace has (as the command line accepts). QueueNotFound otherwise."""
        queues = [e.id for e in self.queues()]
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

    def closure(self, ids: Iterable[str]) -> set[str]:
        """The entries given plus everything they depend on, transitively."""
        seen: set[str] = set()
        stack = list(ids)
        while stack:
            entry_id = stack.pop()
            if entry_id not in seen:
                seen.add(entry_id)
                stack.extend(self.entries[entry_id].dependencies)
        return seen

    def dependents(self, entry_id: str) -> set[str]:
        """Every entry that depends on `entry_id`, transitively (not itself)."""
        found: set[str] = set()
        frontier = {entry_id}
        while frontier:
            frontier = {
                e.id
                for e in self.entries.values()
                if e.id not in found and frontier.intersection(e.dependencies)
            }
            found |= frontier
        return found

    def levels(self, ids: Iterable[str]) -> list[list[str]]:
        """Start order for `ids`: each level depends only on earlier levels."""
        pending = set(ids)
        placed: set[str] = set()
        levels: list[list[str]] = []
        while pending:
            level = sorted(
                i for i in pending
                if all(d in placed or d not in pending for d in self.entries[i].dependencies)
            )
            if not level:
                raise ValueError(f"dependency cycle among {sorted(pending)}")
            levels.append(level)
            placed.update(level)
            pending.difference_update(level)
        return levels

    def find_cycle(self) -> list[str] | None:
        """One dependency cycle as a path of IDs (first == last), or None."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        path: list[str] = []

        def visit(entry_id: str) -> list[str] | None:
            state[entry_id] = 1
            path.append(entry_id)
            for dep in self.entries[entry_id].dependencies:
                if dep not in self.entries:
                    continue
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state and (cycle := visit(dep)):
                    return cycle
            path.pop()
            state[entry_id] = 2
            return None

        for entry_id in self.entries:
            if entry_id not in state and (cycle := visit(entry_id)):
                return cycle
        return None
