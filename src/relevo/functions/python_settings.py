"""Config model of `function.python`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from pydantic import field_validator, model_validator

from relevo.schema import StrictModel


class PythonSettings(StrictModel):
    """`handler: "pkg.mod:callable"`, or `source: file://x.py` with an optional `method`.

    An application declared in code may give `handler` as the callable itself.
    """

    handler: str | Callable[..., Any] | None = None
    source: str | None = None
    method: str | None = None

    @field_validator("handler", mode="before")
    @classmethod
    def _text_or_callable(cls, value: Any) -> Any:
        if value is None or isinstance(value, str) or callable(value):
            return value
        raise ValueError("must be 'package.module:callable', or in code the callable itself")

    @field_validator("source", "method", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if callable(value):
            raise ValueError("must be a string; a callable goes in 'handler'")
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> Self:
        if (self.handler is None) == (self.source is None):
            raise ValueError("give exactly one of 'handler' (\"pkg.module:callable\") or 'source'")
        if isinstance(self.handler, str) and ":" not in self.handler:
            raise ValueError(
                f"handler must look like 'package.module:callable', got {self.handler!r}"
            )
        if self.source is not None and not self.source.startswith("file://"):
            raise ValueError(f"source must be a file:// path, got {self.source!r}")
        return self
