from __future__ import annotations

import orjson

from relevo.codecs import CODECS

JSON = CODECS["json/plain"]


def test_the_json_codec_writes_what_orjson_writes_and_reads_it_back() -> None:
    data = {"id": 7, "user": "user-7", "amount": 21, "tags": ["a", "é"], "ok": None}
    body = JSON.encode(data)
    assert body == orjson.dumps(data)
    assert JSON.decode(body) == data


def test_bytes_bodies_pass_through_the_json_codec_untouched() -> None:
    body = b'{"already": "encoded"}'
    assert JSON.encode(body) is body


def test_integers_orjson_refuses_are_encoded_by_the_standard_library() -> None:
    assert JSON.decode(JSON.encode({"n": 2**70})) == {"n": 2**70}
