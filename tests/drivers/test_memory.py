"""The memory driver against the shared contract, plus what only it promises."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from relevo.drivers.base import QueueSpec
from relevo.drivers.memory import MemoryDriver
from relevo.drivers.memory_settings import MemorySettings
from relevo.errors import DriverUnavailable
from tests.drivers.conformance import DriverConformance, envelope


class TestMemoryConformance(DriverConformance):
    @pytest.fixture
    async def driver(self) -> AsyncIterator[MemoryDriver]:
        driver = MemoryDriver()
        await driver.start()
        yield driver
        await driver.stop()

    @pytest.fixture
    async def make_driver(self) -> AsyncIterator[Callable[..., Awaitable[MemoryDriver]]]:
        made: list[MemoryDriver] = []

        async def make(**overrides: Any) -> MemoryDriver:
            made.append(MemoryDriver(MemorySettings.model_validate(overrides)))
            await made[-1].start()
            return made[-1]

        yield make
        for driver in made:
            await driver.stop()


async def test_nothing_survives_a_restart_and_a_stopped_driver_refuses_work() -> None:
    driver = MemoryDriver()
    await driver.start()
    await driver.declare(QueueSpec("q", {}))
    await driver.publish("q", [envelope(1)])
    await driver.stop()
    with pytest.raises(DriverUnavailable):
        await driver.publish("q", [envelope(2)])
    await driver.start()
    with pytest.raises(Exception, match="not declared"):
        await driver.info("q")
