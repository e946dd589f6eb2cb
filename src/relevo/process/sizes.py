"""Memory sizes as people write them: `512MB`, `1GB`, `300k`, `1048576`."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in `text`. K/M/G/T are powers of 1024 (`MB` and `MiB` mean the same).

    Raises ValueError naming what is accepted.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}; write e.g. 512MB, 1GB, 300KB or bytes")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size
