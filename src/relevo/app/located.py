"""Load errors as config issues: a user fixes a config file, so point at its line."""

from __future__ import annotations

from relevo.errors import ConfigError, ConfigIssue, LoadError, RelevoError, SettingError
from relevo.registry import Entry


def located(error: RelevoError, entry: Entry) -> ConfigError:
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
