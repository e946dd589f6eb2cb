"""Queue declaration: relevo's queue options as AMQP arguments, broker refusals as relevo errors.

A bounded queue (`max_length`) refuses publishes when full (`x-overflow: reject-publish`)
instead of RabbitMQ's default of silently dropping its oldest message: relevo never
loses a message on purpose, and a refused publish surfaces as `QueueFull`.

A quorum queue (`queue_type: quorum`) gets `x-delivery-limit` set far above any
`max_attempts`: RabbitMQ 4 otherwise drops (or dead-letters by its own rules) a message
returned 20 times, behind relevo's back; relevo counts attempts and dead-letters itself.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import aiormq

from relevo.drivers.amqp.connection import CONNECT_ERRORS
from relevo.drivers.amqp.settings import AmqpQueueOptions, AmqpSettings
from relevo.drivers.settings import Options, typed_options
from relevo.errors import BrokerConflict, DriverUnavailable, QueueNotFound, RelevoError

_OPTION_OF_ARGUMENT = {
    "durable": "durable",
    "auto_delete": "auto_delete",
    "x-message-ttl": "message_ttl",
    "x-expires": "queue_expiry",
    "x-max-length": "max_length",
    "x-overflow": "max_length",
    "x-queue-type": "queue_type",
    "x-delivery-limit": "queue_type",
}
QUORUM_DELIVERY_LIMIT = 2**31 - 1
"""RabbitMQ's own redelivery cap on quorum queues, set so that it never applies."""
_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)'")
_VALUES = re.compile(r"received (?:the value )?'([^']*)'.*current is (?:the value )?'([^']*)'")


def queue_options(options: Options) -> AmqpQueueOptions:
    """Typed options; a queue spec may carry the model itself or a plain map."""
    return typed_options(AmqpQueueOptions, options)


def declare_arguments(options: AmqpQueueOptions, settings: AmqpSettings) -> dict[str, Any]:
    """Keyword arguments of `queue_declare`; driver-wide TTL and expiry fill in unset ones."""
    arguments: dict[str, Any] = {}
    ttl = options.message_ttl if options.message_ttl is not None else settings.default_message_ttl
    if ttl is not None:
        arguments["x-message-ttl"] = round(ttl * 1000)
    expiry = (
        options.queue_expiry if options.queue_expiry is not None else settings.default_queue_expiry
    )
    if expiry is not None:
        arguments["x-expires"] = max(1, round(expiry * 1000))
    if options.max_length is not None:
        arguments["x-max-length"] = options.max_length
        arguments["x-overflow"] = "reject-publish"
    if options.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = QUORUM_DELIVERY_LIMIT
    return {
        "durable": options.durable,
        "auto_delete": options.auto_delete,
        "arguments": arguments or None,
    }


@contextlib.contextmanager
def queue_boundary(
    what: str, queue: str, failed: Callable[[RelevoError], None] | None = None
) -> Iterator[None]:
    """Where a call on `queue` that cannot wait for a reconnect becomes relevo's error.

    A 404 is QueueNotFound; a lost link or a timeout is DriverUnavailable ("cannot
    `what` AMQP queue ..."). Either leaves the call's channel unusable: `failed` hears
    the error before it is raised, to forget that channel.
    """
    error: RelevoError
    try:
        yield
    except aiormq.exceptions.ChannelNotFoundEntity:
        error = QueueNotFound(f"AMQP queue {queue!r} does not exist")
        if failed is not None:
            failed(error)
        raise error from None
    except CONNECT_ERRORS as exc:  # OSError covers TimeoutError
        error = DriverUnavailable(f"cannot {what} AMQP queue {queue!r}: {exc}")
        if failed is not None:
            failed(error)
        raise error from exc


def conflict_error(queue: str, reply_text: str) -> BrokerConflict:
    """The broker refused a re-declare: say which queue and option differ, and how."""
    match = _INEQUIVALENT.search(reply_text)
    argument = match.group(1) if match else None
    option = _OPTION_OF_ARGUMENT.get(argument or "", argument)
    values = _VALUES.search(reply_text)
    ours, theirs = values.groups() if values else (None, None)
    if argument and ours is not None:
        ours, theirs = f"{argument}={ours}", f"{argument}={theirs}"
    field = f"driver_options.amqp.{option}" if option else "driver_options.amqp"
    return BrokerConflict(queue, option, theirs, ours, field,
                          detail=reply_text.split(" - ", 1)[-1])
