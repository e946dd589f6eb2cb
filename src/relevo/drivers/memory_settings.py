"""Config models of the memory driver (kept apart so config never imports driver code)."""

from __future__ import annotations

from pydantic import Field

from relevo.drivers.settings import DriverSettings
from relevo.schema import StrictModel


class MemorySettings(DriverSettings):
    """`queue.driver.memory`: nothing beyond the shared fields."""


class MemoryQueueOptions(StrictModel):
    """`driver_options.memory` of a queue."""

    max_length: int | None = Field(default=None, ge=1)


class MemoryConsumerOptions(StrictModel):
    """`driver_options.memory` of a consumer: none yet."""
