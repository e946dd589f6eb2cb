"""Body codecs: how a queue turns handler data into bytes and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson


@dataclass(frozen=True, slots=True)
class Codec:
    name: str  # as written in config
    content_type: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


_join = b"".join


def _json_encode(data: Any) -> bytes:
    if isinstance(data, bytes):  # already encoded: passed through untouched
        return data
    try:
        # orjson's bytes keep a buffer of at least 4 KB however short the JSON, and a body
        # lives as long as its message waits; joining with b"" makes a right-sized copy.
        return _join((orjson.dumps(data), b""))
    except TypeError:  # what orjson refuses (e.g. ints beyond 64 bits) the stdlib may take
        return json.dumps(data, ensure_ascii=False).encode()


def _msgpack_encode(data: Any) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def _msgpack_decode(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False)


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("json/plain", "application/json", _json_encode, orjson.loads),
        Codec("application/msgpack", "application/msgpack", _msgpack_encode, _msgpack_decode),
    )
}
