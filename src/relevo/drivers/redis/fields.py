"""How an envelope is laid out as the fields of one stream entry.

    i  the message ID (what publish returned; kept across nacks and reclaims)
    b  the encoded body, byte for byte
    h  the headers as one msgpack map, so str/int/float/bool keep their types
       (absent when there are none)
    a  failed deliveries so far (absent when 0)

Field names are one letter because every entry stores them; `requeue.lua` and
`reclaim.lua` rewrite `a` in place.
"""

from __future__ import annotations

from typing import Any

import msgpack

from relevo.message import Envelope, Headers

ID, BODY, HEADERS, ATTEMPTS = b"i", b"b", b"h", b"a"


def encode(envelope: Envelope) -> tuple[Any, ...]:
    """The XADD field/value arguments of an envelope."""
    if envelope.headers:
        if envelope.attempts:
            return (ID, envelope.id, BODY, envelope.body, HEADERS,
                    msgpack.packb(envelope.headers), ATTEMPTS, envelope.attempts)
        return (ID, envelope.id, BODY, envelope.body, HEADERS, msgpack.packb(envelope.headers))
    if envelope.attempts:
        return (ID, envelope.id, BODY, envelope.body, ATTEMPTS, envelope.attempts)
    return (ID, envelope.id, BODY, envelope.body)


def decode_headers(raw: bytes | None) -> Headers | None:
    if not raw:
        return None
    headers: Headers = msgpack.unpackb(raw)
    return headers
