"""Driver kinds: their config models and where their code lives (imported only when used)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel

from relevo.drivers.amqp.settings import AmqpConsumerOptions, AmqpQueueOptions, AmqpSettings
from relevo.drivers.memory_settings import (
    MemoryConsumerOptions,
    MemoryQueueOptions,
    MemorySettings,
)
from relevo.drivers.postgres.settings import (
    PostgresConsumerOptions,
    PostgresQueueOptions,
    PostgresSettings,
)
from relevo.drivers.redis.settings import RedisConsumerOptions, RedisQueueOptions, RedisSettings

if TYPE_CHECKING:
    from relevo.drivers.base import Driver


@dataclass(frozen=True)
class DriverKind:
    """Everything the rest of relevo needs to know about one driver kind."""

    kind: str  # entry kind, e.g. "queue.driver.amqp"
    short: str  # key under driver_options, e.g. "amqp"
    settings: type[BaseModel]
    queue_options: type[BaseModel]
    consumer_options: type[BaseModel]
    factory: str  # "module:Class", imported on first use so unused clients never load

    def create(self, settings: BaseModel) -> Driver:
        """A driver of this kind; `settings` is an instance of `self.settings`."""
        if not isinstance(settings, self.settings):
            raise TypeError(f"{self.kind} takes {self.settings.__name__}, not {settings!r}")
        module_name, _, attr = self.factory.partition(":")
        driver_class = getattr(importlib.import_module(module_name), attr)
        return cast("Driver", driver_class(settings))


DRIVER_KINDS: dict[str, DriverKind] = {
    kind.kind: kind
    for kind in (
        DriverKind(
            "queue.driver.memory",
            "memory",
            MemorySettings,
            MemoryQueueOptions,
            MemoryConsumerOptions,
            "relevo.drivers.memory:MemoryDriver",
        ),
        DriverKind(
            "queue.driver.amqp",
            "amqp",
            AmqpSettings,
            AmqpQueueOptions,
            AmqpConsumerOptions,
            "relevo.drivers.amqp.driver:AmqpDriver",
        ),
        DriverKind(
            "queue.driver.redis",
            "redis",
            RedisSettings,
            RedisQueueOptions,
            RedisConsumerOptions,
            "relevo.drivers.redis.driver:RedisDriver",
        ),
        DriverKind(
            "queue.driver.postgres",
            "postgres",
            PostgresSettings,
            PostgresQueueOptions,
            PostgresConsumerOptions,
            "relevo.drivers.postgres.driver:PostgresDriver",
        ),
    )
}
