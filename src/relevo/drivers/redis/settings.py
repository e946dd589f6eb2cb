"""Config models of the Redis Streams driver (no redis import here)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

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

    max_length: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_trimming(cls, data: Any) -> Any:
        if isinstance(data, dict) and "maxlen" in data:
            raise ValueError(
                "`maxlen` is gone: it trimmed messages away unread; use `max_length`, "
                "a bound that holds publishers back and then refuses with QueueFull"
            )
        return data


class RedisConsumerOptions(StrictModel):
    """`driver_options.redis` of a consumer."""

    consumer_name: str | None = None
