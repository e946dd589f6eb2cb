"""The `metrics.prometheus` entry's config model (kept apart so config never imports
prometheus-client)."""

from __future__ import annotations

from pydantic import Field, field_validator

from relevo.durations import DurationS
from relevo.schema import StrictModel


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6) as a host and a port number."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9464), got {listen!r}")
    return host.strip("[]"), int(port)


class PrometheusSettings(StrictModel):
    """`metrics.prometheus`: serve the application's metrics at http://listen/metrics."""

    listen: str = "127.0.0.1:9464"
    queue_cache: DurationS = Field(default=1.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_listen(value)
        return value
