"""Envelope headers to AMQP properties and back, with the attempts count riding along.

Neutral headers become the AMQP properties made for them (`correlation_id`, `reply_to`,
`content_type`, `type`, `content_encoding`); the rest go in the header table, where
str, int, float and bool keep their types. The envelope's attempts travel in the
`x-relevo-attempts` table entry, which deliveries never show.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from typing import Any

from pamqp import encode
from pamqp.commands import Basic

from relevo.message import Envelope, Headers

ATTEMPTS_HEADER = "x-relevo-attempts"
"""Header-table entry holding `Envelope.attempts` (failed deliveries so far)."""

NEUTRAL_PROPERTIES: dict[str, str] = {
    "correlation_id": "correlation_id",
    "reply_to": "reply_to",
    "content_type": "content_type",
    "message_type": "message_type",
    "encoding": "content_encoding",
}
"""Neutral header -> AMQP property; `traceparent` has no property and rides in the table."""

DEATH_HEADER = "x-death"
DELIVERY_COUNT_HEADER = "x-delivery-count"  # a quorum queue's own count of returns
_DEATH_PREFIXES = ("x-first-death-", "x-last-death-")
"""What RabbitMQ adds when it dead-letters (the delay ladder does): never shown, never copied."""

_PROPERTY_PAIRS = tuple((prop, header) for header, prop in NEUTRAL_PROPERTIES.items())
_SCALARS = frozenset({str, int, float, bool})
_SHORTSTR_MAX = 255
_KEY = struct.Struct(">B")
_TABLE_SIZE = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")
PERSISTENT = 2


class Properties(Basic.Properties):
    """Basic.Properties whose header table writes floats as 64-bit doubles.

    pamqp writes a Python float as a 32-bit `f`, which turns 0.1 into 0.10000000149;
    a `d` keeps the value exact, and every AMQP client reads it as a float.
    """

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return encode_table(value)
        return super().encode_property(name, value)


def encode_table(table: dict[str, Any]) -> bytes:
    """An AMQP field table; floats as doubles, everything else as pamqp writes it."""
    parts: list[bytes] = []
    for key, value in table.items():
        raw = key.encode()
        parts.append(_KEY.pack(len(raw)) + raw)
        if type(value) is float:
            parts.append(b"d" + _DOUBLE.pack(value))
        else:
            parts.append(encode.encode_table_value(value))
    data = b"".join(parts)
    return _TABLE_SIZE.pack(len(data)) + data


def _fits_property(value: object) -> bool:
    return type(value) is str and len(value) > 0 and len(value.encode()) <= _SHORTSTR_MAX


def properties_for(envelope: Envelope, timestamp: datetime | None = None) -> Properties:
    """Persistent properties for one envelope; message ID and timestamp set."""
    props = Properties(
        message_id=envelope.id,
        delivery_mode=PERSISTENT,
        timestamp=timestamp or datetime.now(UTC),
    )
    table: dict[str, Any] | None = None
    if envelope.headers:
        for key, value in envelope.headers.items():
            prop = NEUTRAL_PROPERTIES.get(key)
            if prop is not None and _fits_property(value):
                setattr(props, prop, value)
            else:
                if table is None:
                    table = {}
                table[key] = value
    if envelope.attempts:
        if table is None:
            table = {}
        table[ATTEMPTS_HEADER] = envelope.attempts
    props.headers = table
    return props


def assign_message_id() -> str:
    """An ID for a message published without one (by another program): the copies that
    nacks republish carry it, so it stays the message's ID from then on."""
    return f"amqp-{uuid.uuid4().hex}"


def with_attempts(props: Basic.Properties, attempts: int) -> Properties:
    """A copy of received properties for a republish, carrying `attempts` failed deliveries."""
    copy = Properties()
    for name in Basic.Properties.__slots__:
        setattr(copy, name, getattr(props, name))
    table = _without_deaths(props.headers) if props.headers else {}
    table[ATTEMPTS_HEADER] = attempts
    copy.headers = table
    copy.delivery_mode = props.delivery_mode or PERSISTENT
    return copy


def _without_deaths(table: dict[str, Any]) -> dict[str, Any]:
    """A copy of `table` without RabbitMQ's dead-letter history.

    A copy that waits in the delay ladder again must not carry it: RabbitMQ drops a
    message that reaches a queue already in its `x-death` with no rejection since
    (cycle detection), and a retry waits in the same levels as the delay before it.
    """
    if DEATH_HEADER not in table:
        return dict(table)
    return {
        k: v for k, v in table.items() if k != DEATH_HEADER and not k.startswith(_DEATH_PREFIXES)
    }


def read_headers(props: Basic.Properties) -> tuple[Headers, int]:
    """The neutral header map of a received message, and its attempts so far.

    The table pamqp decoded is fresh for each message, so it is reused, not copied.
    Entries that are not str/int/float/bool (the broker's own `x-death` lists, byte
    arrays from foreign publishers) are left out: handlers only ever see flat scalars.
    A message that waited in the delay ladder has an `x-death` list, so the same slow
    path drops the `x-first-death-*` strings that come with it. A quorum queue's
    `x-delivery-count` is the broker's, not the publisher's: it is left out too.
    """
    table = props.headers
    if table:
        attempts = table.pop(ATTEMPTS_HEADER, 0)
        table.pop(DELIVERY_COUNT_HEADER, None)
        for value in table.values():
            if type(value) not in _SCALARS:
                table = {
                    k: v for k, v in table.items()
                    if type(v) in _SCALARS and not k.startswith(_DEATH_PREFIXES)
                }
                break
        headers: Headers = table  # type: ignore[assignment]
    else:
        attempts = 0
        headers = {}
    for prop, header in _PROPERTY_PAIRS:
        value = getattr(props, prop)
        if value is not None:
            headers[header] = value
    return headers, attempts if type(attempts) is int else 0
