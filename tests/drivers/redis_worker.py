"""A consumer process for test_redis: takes deliveries, never settles them, waits to die.

    python -m tests.drivers.redis_worker URL KEY_PREFIX QUEUE PREFETCH CLAIM_IDLE_S

Prints "holding N" once it holds PREFETCH unsettled deliveries, then sleeps until it is
killed, so the test can SIGKILL it with entries pending in the consumer group.
"""

from __future__ import annotations

import asyncio
import sys

from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.settings import RedisSettings
from relevo.message import Delivery


async def main(url: str, prefix: str, queue: str, prefetch: int, claim_idle_s: float) -> None:
    driver = RedisDriver(
        RedisSettings(url=url, key_prefix=prefix, claim_idle=claim_idle_s, block=0.2)
    )
    await driver.start()
    held: list[Delivery] = []
    full = asyncio.Event()

    def hold(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) == prefetch:
            full.set()

    await driver.attach(queue, hold, prefetch, {})
    await full.wait()
    print(f"holding {len(held)}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    url, prefix, queue, prefetch, claim_idle_s = sys.argv[1:6]
    asyncio.run(main(url, prefix, queue, int(prefetch), float(claim_idle_s)))
