"""The Redis Streams driver against the shared contract, plus what only Redis promises."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.settings import RedisSettings
from tests.conftest import require_service
from tests.drivers.conformance import DriverConformance

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"


def settings(**overrides: object) -> RedisSettings:
    """Settings with a key prefix no other test (or engineer) shares."""
    values: dict[str, object] = {
        "url": REDIS_URL,
        "key_prefix": f"relevo-test:{uuid.uuid4().hex[:12]}:",
        "claim_idle": 1.0,
        "block": 0.2,
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.5,
    }
    values.update(overrides)
    return RedisSettings.model_validate(values)


async def delete_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def driver() -> AsyncIterator[RedisDriver]:
    require_service("redis", "127.0.0.1", 6379)
    driver = RedisDriver(settings())
    await driver.start()
    yield driver
    await driver.stop()
    await delete_keys(driver.settings.key_prefix)


class TestRedisConformance(DriverConformance):
    pass
