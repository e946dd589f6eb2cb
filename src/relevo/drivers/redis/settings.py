"""Config models of the Redis Streams driver (no redis import here)."""

from __future__ import annotations

from pydantic import Field

from relevo.drivers.settings import DriverSettings, TlsSettings
from relevo.durations import DurationS
from relevo.schema import StrictModel


class RedisSettings(DriverSettings):
    """`queue.driver.redis`."""

    url: str = "redis://localhost:6379/0"
    key_prefix: str = "relevo:"
    claim_idle: DurationS = Field(default=30.0, gt=0)
    block: DurationS = Field(default=1.0, gt=0)
    reconnect_delay: DurationS = Field(default=1.0, gt=0)
    reconnect_max_delay: DurationS = Field(default=30.0, gt=0)
    tls: TlsSettings = TlsSettings()


class RedisQueueOptions(StrictModel):
    """`driver_options.redis` of a queue."""

    maxlen: int | None = Field(default=None, ge=1)


class RedisConsumerOptions(StrictModel):
    """`driver_options.redis` of a consumer."""

    consumer_name: str | None = None
