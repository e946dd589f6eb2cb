"""How an envelope is laid out as the fields of one stream entry.

    i  the message ID (what publish returned; kept across nacks and reclaims)
    b  the encoded body, byte for byte
    h  the headers as one msgpack map, so str/int/float/bool keep their types
       (absent when there are none)
    a  failed deliveries so far (absent when 0)

Field names are one letter because every entry stores them; `requeue.lua` and
`reclaim.lua` rewrite `a` in place.

A delayed message waits as one member of the queue's sorted set: msgpack values one
after another, a unique token first (so two equal messages stay two members), then the
same field/value pairs; `promote.lua` XADDs them as they are when the message is due.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from relevo.message import Envelope, Headers, Settler, Unreadable

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


def pack_delayed(token: str, envelope: Envelope) -> bytes:
    """The sorted-set member of a delayed message (see the module docstring).

    Bytes as msgpack raw strings: Redis' Lua `cmsgpack` reads no bin type."""
    packer = msgpack.Packer(use_bin_type=False)
    return b"".join([packer.pack(token), *(packer.pack(value) for value in encode(envelope))])


def decode_headers(raw: bytes | None) -> Headers | None:
    if not raw:
        return None
    headers: Headers = msgpack.unpackb(raw)
    return headers


def unreadable(
    settler: Settler, entry_id: bytes, fields: dict[bytes, bytes], count: int, error: Exception
) -> Unreadable:
    """An entry without relevo's fields (another program's XADD) or with damaged ones.

    Its ID is the stream entry ID (a nack re-adds the entry, so each attempt has its
    own); its body every field as a JSON object, so a dead letter keeps what was
    written; `count` is its deliveries, as for any entry.
    """
    if isinstance(error, KeyError) and isinstance(error.args[0], bytes):
        reason = f"missing field {error.args[0].decode(errors='replace')!r}"
    else:
        reason = f"malformed fields ({type(error).__name__}: {error})"
    text = {  # `a` is relevo's own count, written by nacks: the dead letter carries it
        key.decode(errors="backslashreplace"): value.decode(errors="backslashreplace")
        for key, value in fields.items() if key != ATTEMPTS
    }
    try:
        attempts = int(fields.get(ATTEMPTS, 0))
    except ValueError:
        attempts = 0
    return Unreadable(
        settler, entry_id.decode(), json.dumps(text).encode(), attempts + count, entry_id,
        f"unreadable entry: {reason}",
    )
