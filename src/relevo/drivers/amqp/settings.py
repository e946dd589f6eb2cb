"""Config models of the AMQP driver (no aio-pika import here)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from relevo.drivers.settings import DriverSettings, TlsSettings
from relevo.durations import DurationS
from relevo.schema import StrictModel


class AmqpSettings(DriverSettings):
    """`queue.driver.amqp`."""

    url: str = "amqp://guest:guest@localhost:5672/"
    vhost: str | None = None
    connection_name: str | None = None
    heartbeat: DurationS | None = None
    connection_timeout: DurationS = Field(default=10.0, gt=0)
    reconnect_delay: DurationS = Field(default=1.0, gt=0)
    reconnect_max_delay: DurationS = Field(default=30.0, gt=0)
    default_message_ttl: DurationS | None = None
    default_queue_expiry: DurationS | None = None
    prefetch_count: int | None = Field(default=None, ge=1, le=65535)
    tls: TlsSettings = TlsSettings()


class AmqpQueueOptions(StrictModel):
    """`driver_options.amqp` of a queue."""

    durable: bool = True
    auto_delete: bool = False
    message_ttl: DurationS | None = None
    queue_expiry: DurationS | None = None
    max_length: int | None = Field(default=None, ge=1)
    queue_type: Literal["classic", "quorum"] = "classic"

    @model_validator(mode="after")
    def _quorum_is_durable(self) -> Self:
        if self.queue_type == "quorum" and (not self.durable or self.auto_delete):
            raise ValueError("a quorum queue is always durable and never auto-deleted: "
                             "set durable: true and auto_delete: false, or queue_type: classic")
        return self


class AmqpConsumerOptions(StrictModel):
    """`driver_options.amqp` of a consumer."""

    consumer_tag: str | None = None
    exclusive: bool = False
