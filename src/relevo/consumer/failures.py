"""The one log line of a failed delivery, the same whatever the handler's language.

Each failure (raise, `return False`, a returned error, Lua `nil, err`, an undecodable
body, an unreadable entry) is one WARNING record with the consumer, the queue, the
message ID, the attempt and the reason, in the text and as record attributes (`queue`,
`consumer`, `message_id`, `attempts`) for structured handlers. A Python exception adds
its traceback; a Lua error's reason already names file and line.

A poison message (one that fails every time, on a queue without a dead letter) must not
flood the log: the first `FULL_LINES` failures of a message are logged in full, then one
line per message per `SUMMARY_EVERY_S` at most, saying how many failures it left out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from relevo.errors import RelevoError
from relevo.message import Delivery

log = logging.getLogger("relevo.consumer")


FULL_LINES = 3
SUMMARY_EVERY_S = 60.0
_REMEMBERED = 10_000  # messages whose failures are being summarised, most recent kept


class FailureDigest:
    """Decides which failures of one message get a log line (bounded memory)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # [when, left out]

    def admit(self, consumer: str, message_id: str, attempts: int) -> int | None:
        """None: leave this failure out. Otherwise log it, saying this many were left out."""
        if attempts <= FULL_LINES:
            return 0
        key = (consumer, message_id)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < SUMMARY_EVERY_S:
            last[1] += 1
            return None
        self._last[key] = [now, 0.0]
        self._last.move_to_end(key)
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)
        return 0 if last is None else int(last[1])


digest = FailureDigest()


def log_failure(
    consumer: str, queue: str, delivery: Delivery, reason: str,
    error: BaseException | None = None,
) -> None:
    """Log one failed delivery; `error` is the exception the handler raised, if it did."""
    left_out = digest.admit(consumer, delivery.id, delivery.attempts)
    if left_out is None:
        return
    trace = None
    if error is not None and not isinstance(error, RelevoError):
        trace = (type(error), error, _from_the_handler(error.__traceback__))
    summary = ""
    if delivery.attempts == FULL_LINES + 1:
        summary = f" (further failures of {delivery.id} are summarised once a minute)"
    elif left_out:
        summary = f" ({left_out} failures of it not logged since the last line)"
    log.warning(
        "%s: message %s from %s failed (attempt %d): %s%s",
        consumer, delivery.id, queue, delivery.attempts, reason, summary,
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
