"""Config models of the AMQP driver (no aio-pika import here)."""

from __future__ import annotations

from pydantic import Field

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


class AmqpConsumerOptions(StrictModel):
    """`driver_options.amqp` of a consumer."""

    consumer_tag: str | None = None
    exclusive: bool = False
