"""Memory sizes for --max-memory-per-process."""

from __future__ import annotations

import pytest

from relevo.process.sizes import parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("512MB", 512 * 2**20), ("1GB", 2**30), ("1gib", 2**30), ("300k", 300 * 1024),
    ("1.5G", 3 * 2**29), ("4096", 4096), ("64 MiB", 64 * 2**20),
])
def test_sizes_read_with_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-5MB", "lots", "", "5XB", "0", "0MB"])
def test_bad_sizes_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"512MB|positive"):
        parse_size(text)
