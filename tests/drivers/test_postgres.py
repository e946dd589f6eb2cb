"""The PostgreSQL driver against the shared contract, plus what only it promises:
leases and crash recovery, transactional publish, the recorded schema version."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relevo.drivers.postgres.driver import PostgresDriver
from tests.conftest import require_service
from tests.drivers.conformance import DriverConformance
from tests.drivers.postgres_support import drop_schema, settings

pytestmark = pytest.mark.broker


@pytest.fixture
async def driver() -> AsyncIterator[PostgresDriver]:
    require_service("postgres", "127.0.0.1", 5432)
    driver = PostgresDriver(settings())
    await driver.start()
    yield driver
    await driver.stop()
    await drop_schema(driver.settings.schema_name)


class TestPostgresConformance(DriverConformance):
    pass
