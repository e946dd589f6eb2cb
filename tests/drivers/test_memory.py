"""The memory driver against the shared contract, plus what only it promises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relevo.drivers.base import QueueSpec
from relevo.drivers.memory import MemoryDriver
from relevo.drivers.memory_settings import MemorySettings
from relevo.errors import DriverUnavailable, QueueFull
from tests.drivers.conformance import Collector, DriverConformance, envelope


class TestMemoryConformance(DriverConformance):
    @pytest.fixture
    async def driver(self) -> AsyncIterator[MemoryDriver]:
        driver = MemoryDriver()
        await driver.start()
        yield driver
        await driver.stop()


@pytest.fixture
async def bounded() -> AsyncIterator[MemoryDriver]:
    driver = MemoryDriver(MemorySettings(publish_timeout=0.2))
    await driver.start()
    await driver.declare(QueueSpec("small", {"max_length": 2}))
    yield driver
    await driver.stop()


async def test_a_full_queue_makes_the_publisher_wait_for_room(bounded: MemoryDriver) -> None:
    await bounded.publish("small", [envelope(1), envelope(2)])
    waiting = asyncio.create_task(bounded.publish("small", [envelope(3)]))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    sink = Collector()
    sub = await bounded.attach("small", sink, 1, {})
    sink.deliveries[0].ack()
    await asyncio.wait_for(waiting, 1)
    assert (await bounded.info("small")).message_count == 2
    await sub.close()


async def test_a_queue_that_stays_full_raises_queue_full(bounded: MemoryDriver) -> None:
    await bounded.publish("small", [envelope(1), envelope(2)])
    with pytest.raises(QueueFull, match="small"):
        await bounded.publish("small", [envelope(3)])


async def test_a_nack_on_a_full_queue_never_drops_the_message(bounded: MemoryDriver) -> None:
    await bounded.publish("small", [envelope(1), envelope(2)])
    sink = Collector()
    sub = await bounded.attach("small", sink, 2, {})
    for delivery in list(sink.deliveries):
        delivery.nack()
    assert (await bounded.info("small")).message_count == 2
    assert len(sink.deliveries) == 4
    await sub.close()


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
