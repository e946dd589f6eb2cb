"""The AMQP driver against the shared contract and a real RabbitMQ, plus what only it promises.

Every test talks to the broker at 127.0.0.1:5672 (guest/guest); nothing is mocked.
Queues get unique names and are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiormq
import pytest

from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.base import QueueSpec
from tests.conftest import require_service
from tests.drivers.conformance import DriverConformance

pytestmark = pytest.mark.broker

HOST, PORT = "127.0.0.1", 5672
URL = f"amqp://guest:guest@{HOST}:{PORT}/"


class QueueJanitor:
    """Deletes the queues a test created, whatever state the driver is in."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    async def clean(self) -> None:
        if not self.names:
            return
        connection = await aiormq.connect(URL)
        try:
            channel = await connection.channel()
            for name in self.names:
                await channel.queue_delete(name)
        finally:
            await connection.close()


@pytest.fixture
def broker() -> None:
    require_service("RabbitMQ", HOST, PORT)


@pytest.fixture
async def janitor(broker: None) -> AsyncIterator[QueueJanitor]:
    janitor = QueueJanitor()
    yield janitor
    await janitor.clean()


def settings(**overrides: Any) -> AmqpSettings:
    values: dict[str, Any] = {
        "url": URL,
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.5,
        "publish_timeout": 5.0,
    }
    return AmqpSettings.model_validate(values | overrides)


class _TrackingDriver(AmqpDriver):
    """An AmqpDriver that remembers every queue it declared, for the janitor."""

    def __init__(self, janitor: QueueJanitor, driver_settings: AmqpSettings) -> None:
        super().__init__(driver_settings)
        self._janitor = janitor

    async def declare(self, spec: QueueSpec) -> None:
        self._janitor.names.add(spec.name)
        await super().declare(spec)


class TestAmqpConformance(DriverConformance):
    @pytest.fixture
    def queue_options(self) -> Mapping[str, Any]:
        return {"durable": False}

    @pytest.fixture
    async def driver(self, janitor: QueueJanitor) -> AsyncIterator[AmqpDriver]:
        driver = _TrackingDriver(janitor, settings())
        await driver.start()
        yield driver
        await driver.stop()


def unique(prefix: str) -> str:
    return f"relevo-test-{prefix}-{uuid.uuid4().hex[:10]}"
