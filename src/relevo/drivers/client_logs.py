"""Client libraries' own log records about connection events a driver handles itself.

A broker restart or a dropped connection is expected: the driver logs one line saying
what happened ("connection lost ... reconnecting", "restored") and recovers. The client
library (aiormq, aio-pika, redis-py) meanwhile logs the same event at WARNING or ERROR,
often with a chained traceback. `quiet_connection_events` moves such records to DEBUG:
they stay available to whoever turns the library's logger to DEBUG, and out of every
other log. Records about anything else keep their level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable


class ConnectionEventsToDebug(logging.Filter):
    """Demote a record to DEBUG when it is about a connection event (by its exception
    type or its message); drop it when its logger does not log DEBUG."""

    def __init__(self, errors: tuple[type[BaseException], ...], messages: tuple[str, ...]):
        super().__init__()
        self.errors = errors
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not self._expected(record):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True

    def _expected(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            return isinstance(error, self.errors)
        return isinstance(record.msg, str) and record.msg.startswith(self.messages)


def quiet_connection_events(
    logger_names: Iterable[str],
    errors: tuple[type[BaseException], ...],
    messages: tuple[str, ...] = (),
) -> None:
    """Install the filter once on each named logger (filters do not reach child loggers,
    so every logger that emits such records is named)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ConnectionEventsToDebug) for f in logger.filters):
            logger.addFilter(ConnectionEventsToDebug(errors, messages))
