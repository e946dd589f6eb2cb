"""The two log formats of `relevo run --log-format`: `text` (the default) and `json`.

Both carry the same fields. A line about a message has them as record attributes
(`queue`, `consumer`, `message_id`, `attempts`, set with `extra=`): JSON writes them as
keys, text appends those its message does not already show as `key=value`.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

MESSAGE_FIELDS = ("queue", "consumer", "message_id", "attempts")
FORMATS = ("text", "json")


def _time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the message fields
    (and `pid` in the child processes of `--processes N`)."""

    def __init__(self, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.with_pid:
            line["pid"] = record.process
        for name in MESSAGE_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, then the traceback if any."""

    def __init__(self, with_pid: bool = False) -> None:
        pid = "[%(process)d]" if with_pid else ""
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        message = record.message
        extra = [
            f"{name}={value}" for name in MESSAGE_FIELDS
            if (value := getattr(record, name, None)) is not None and str(value) not in message
        ]
        return f"{text} {' '.join(extra)}" if extra else text


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (the live status redirects it to
    print log lines above its view)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(level: str, fmt: str = "text", *, with_pid: bool = False) -> None:
    """Route every log record to stderr in `fmt`, at `level` and above."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter(with_pid) if fmt == "json" else TextFormatter(with_pid))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
