"""The retry policy of a queue: each failed delivery waits longer before the next one.

After failed delivery number n the message waits
`min(max_delay, initial_delay * factor**(n-1))`, varied by up to `jitter` of itself,
in the driver's store. A failure that names its own delay (`relevo.Retry(after)`,
`nack(delay=...)`) keeps it; a reject is left alone.
"""

from __future__ import annotations

from relevo.backoff import Backoff
from relevo.message import Delivery, Failure
from relevo.middleware.base import ConsumerScope, Middleware, NackNext


class RetryPolicy(Middleware):
    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff

    def nack(
        self, scope: ConsumerScope, delivery: Delivery, failure: Failure, call_next: NackNext
    ) -> None:
        if failure.delay_s is None and not failure.reject:
            failure.delay_s = self.backoff.delay_s(delivery.attempts)
        call_next(delivery, failure)
