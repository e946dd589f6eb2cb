"""Settings every driver kind shares: the publish timeout and TLS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from relevo.durations import DurationS
from relevo.schema import StrictModel

Options = Mapping[str, Any] | BaseModel
"""Queue or consumer options as a driver receives them: the typed model the config
checks validated once, or a plain mapping (from code and tests), validated on arrival."""

M = TypeVar("M", bound=BaseModel)


def typed_options(model: type[M], given: Options) -> M:
    """`given` as `model`: as it is when the config checks made it, validated otherwise."""
    if isinstance(given, model):
        return given
    if isinstance(given, BaseModel):
        given = given.model_dump()
    return model.model_validate(dict(given))


class TlsSettings(StrictModel):
    """TLS for a broker connection. PEM values are inline text, `file://` paths or `${env:}`."""

    enabled: bool = False
    server_name: str | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    insecure_skip_verify: bool = False


class DriverSettings(StrictModel):
    """Fields accepted by every driver kind (besides `lifecycle`)."""

    publish_timeout: DurationS = Field(default=5.0, gt=0)
