"""Settings every driver kind shares: the publish timeout and TLS."""

from __future__ import annotations

from pydantic import Field

from relevo.durations import DurationS
from relevo.schema import StrictModel


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
