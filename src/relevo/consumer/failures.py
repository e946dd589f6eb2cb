"""The one log line of a failed delivery, the same whatever the handler's language.

Each failure (raise, `return False`, a returned error, Lua `nil, err`, an undecodable
body, an unreadable entry) is one WARNING record with the consumer, the queue, the
message ID, the attempt and the reason, in the text and as record attributes (`queue`,
`consumer`, `message_id`, `attempts`) for structured handlers. A Python exception adds
its traceback; a Lua error's reason already names file and line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from types import TracebackType

from relevo.errors import RelevoError
from relevo.message import Delivery

log = logging.getLogger("relevo.consumer")


def log_failure(
    consumer: str, queue: str, delivery: Delivery, reason: str,
    error: BaseException | None = None,
) -> None:
    """Log one failed delivery; `error` is the exception the handler raised, if it did."""
    trace = None
    if error is not None and not isinstance(error, RelevoError):
        trace = (type(error), error, _from_the_handler(error.__traceback__))
    log.warning(
        "%s: message %s from %s failed (attempt %d): %s",
        consumer, delivery.id, queue, delivery.attempts, reason,
        exc_info=trace,
        extra={"queue": queue, "consumer": consumer, "message_id": delivery.id,
               "attempts": delivery.attempts},
    )


def log_retry(consumer: str, queue: str, delivery: Delivery, reason: str, after_s: float) -> None:
    """A handler asked for a retry (`relevo.Retry`): INFO, it is no error."""
    log.info(
        "%s: message %s from %s retried in %gs (attempt %d): %s",
        consumer, delivery.id, queue, after_s, delivery.attempts, reason,
        extra={"queue": queue, "consumer": consumer, "message_id": delivery.id,
               "attempts": delivery.attempts},
    )


_MACHINERY = (str(Path(__file__).parents[1]), str(Path(asyncio.__file__).parent),
              str(Path(concurrent.futures.__file__).parent))
"""relevo's own frames and the event loop's and thread pool's, which call the handler."""


def _from_the_handler(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the handler's first frame on: what the user wrote."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_MACHINERY):
        tb = tb.tb_next
    return tb if tb is not None else first
