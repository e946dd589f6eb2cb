"""Every error relevo raises on purpose.

    RelevoError
    ├── ConfigError          a config file is wrong (lists every problem found)
    ├── QueueNotFound        a queue ID or broker-side queue that does not exist
    ├── PublishError         a message could not be published (bad header, codec)
    │   └── QueueFull        a bounded queue stayed full past the publish timeout
    ├── DriverUnavailable    the broker cannot be reached (at start, or past a timeout)
    ├── NoDeliveryContext    relevo.message() outside a handler
    └── StopTimeout          handlers still running when stop_timeout ran out

Third-party exceptions (aio-pika, redis-py, lupa) are translated into these at the
driver or function boundary, so callers only ever catch `RelevoError`.
"""

from __future__ import annotations

from dataclasses import dataclass


class RelevoError(Exception):
    """Root of every error relevo raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in one config file: where it is and what is allowed instead."""

    file: str
    line: int | None
    entry: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.entry:
            parts.append(self.entry)
        if self.field:
            parts.append(self.field)
        return ": ".join(parts) + f": {self.message}"


class ConfigError(RelevoError):
    """The configuration is invalid; `issues` holds every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        count = len(issues)
        head = f"{count} config error{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in issues)]))


class QueueNotFound(RelevoError):
    """A queue entry ID (or broker-side queue) that does not exist."""


class PublishError(RelevoError):
    """A message could not be published: reserved or badly typed header, unencodable body."""


class QueueFull(PublishError):
    """A bounded queue stayed full for the whole publish timeout."""


class DriverUnavailable(RelevoError):
    """The driver's broker cannot be reached (at start, or for a whole publish timeout)."""


class NoDeliveryContext(RelevoError):
    """`relevo.message()` was called outside a handler."""


class StopTimeout(RelevoError):
    """Handlers were still running when `stop_timeout` ran out; their messages come back."""
