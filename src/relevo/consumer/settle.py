"""The settlement rule (docs/semantics.md), as pure functions: what a handler's result means."""

from __future__ import annotations

from typing import Any


def nack_reason(result: Any) -> str | None:
    """None when the result acks; otherwise why the delivery is nacked."""
    if result is False:
        return "handler returned False"
    if isinstance(result, BaseException):
        return describe(result)
    return None


def describe(error: BaseException) -> str:
    """The error text carried in `x_dead_letter_reason` and logs."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
