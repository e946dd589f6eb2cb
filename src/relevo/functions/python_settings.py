"""Config model of `function.python`."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from relevo.schema import StrictModel


class PythonSettings(StrictModel):
    """`handler: "pkg.mod:callable"`, or `source: file://x.py` with an optional `method`."""

    handler: str | None = None
    source: str | None = None
    method: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> Self:
        if (self.handler is None) == (self.source is None):
            raise ValueError("give exactly one of 'handler' (\"pkg.module:callable\") or 'source'")
        if self.handler is not None and ":" not in self.handler:
            raise ValueError(
                f"handler must look like 'package.module:callable', got {self.handler!r}"
            )
        if self.source is not None and not self.source.startswith("file://"):
            raise ValueError(f"source must be a file:// path, got {self.source!r}")
        return self
