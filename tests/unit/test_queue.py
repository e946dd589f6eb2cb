from __future__ import annotations

import os

import pytest

from relevo.errors import PublishError
from relevo.queue import check_headers, message_ids


def test_headers_are_copied_so_later_changes_do_not_leak_into_the_message() -> None:
    original = {"a": 1}
    checked = check_headers(original)
    original["a"] = 2
    assert checked == {"a": 1}


@pytest.mark.parametrize(
    ("headers", "match"),
    [({"x_custom": "v"}, "reserved"), ({"a": [1]}, "str, int, float or bool"),
     ({"a": None}, "got NoneType"), ({1: "v"}, "strings")],
)
def test_bad_headers_raise_publish_error(headers: dict[object, object], match: str) -> None:
    with pytest.raises(PublishError, match=match):
        check_headers(headers)  # type: ignore[arg-type]


def test_message_ids_are_unique_and_differ_in_a_forked_child() -> None:
    ids = {message_ids.next() for _ in range(10_000)}
    assert len(ids) == 10_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, message_ids.next().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 200).decode()
    assert child_id.split("-")[0] != message_ids.next().split("-")[0]
