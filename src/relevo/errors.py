"""Every error relevo raises on purpose.

    RelevoError
    ├── ConfigError          a config file is wrong (lists every problem found)
    ├── SettingError         one setting cannot be used as given (a TLS file that does not
    │                        load); names the field; the app reports it as a ConfigError
    │                        at its entry's file and line
    ├── BrokerConflict       the broker already holds the queue with other options: names
    │                        the queue, the option, the broker's value and ours
    ├── LoadError            a function's code cannot become a handler (a Python import or
    │                        attribute, a Lua source that does not read, compile or run);
    │                        the app reports it as a ConfigError at its entry
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


class SettingError(RelevoError):
    """One setting of a driver cannot be used as given; `field` names it (`tls.cert`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class BrokerConflict(RelevoError):
    """The broker already has the queue, declared with other options than ours.

    `field` is the option to change (`driver_options.amqp.message_ttl`), `theirs` and
    `ours` the broker's and our values as the broker names them (None when it does not
    say). Nothing is changed on the broker: change the option, or delete the queue.
    """

    def __init__(
        self, queue: str, option: str | None, theirs: str | None, ours: str | None,
        field: str, detail: str = "",
    ) -> None:
        self.queue = queue
        self.option = option
        self.theirs = theirs
        self.ours = ours
        self.field = field
        values = f" (broker: {theirs}, ours: {ours})" if theirs is not None else ""
        because = f" [{detail}]" if detail and theirs is None else ""
        super().__init__(
            f"queue {queue!r} already exists on the broker with a different "
            f"{option or 'setting'}{values}{because}; change {field} to match or delete "
            f"the queue"
        )


class LoadError(RelevoError):
    """A function's code cannot become a handler: Python or Lua, read, import or compile.

    `field` is the setting that points at the code (`handler`, `source`, `method`);
    the message says which file and why (with the line, when there is one).
    """

    def __init__(self, message: str, field: str = "source") -> None:
        self.field = field
        super().__init__(message)


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
