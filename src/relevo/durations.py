"""Durations as written in config ("500ms", "10s", "5m", "1h", or a number of seconds)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


def parse_duration_s(value: object) -> float:
    """Seconds in `value`; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '500ms', '10s', '5m', '1h' or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match.group(1)) * _UNITS_S[match.group(2)]
    else:
        raise ValueError(
            f"expected a duration like '500ms', '10s', '5m', '1h' or seconds, got {value!r}"
        )
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
"""A pydantic field type: accepts any config duration, holds seconds as a float."""
