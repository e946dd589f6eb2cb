"""A worker process for the SIGKILL test: takes deliveries, never settles them, waits to die.

    python -m tests.drivers.amqp_worker URL QUEUE COUNT

Once it holds COUNT unsettled deliveries it prints one line, `holding <attempts,...>`,
and sleeps until the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys

from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.message import Delivery


async def hold(url: str, queue: str, count: int) -> None:
    driver = AmqpDriver(AmqpSettings(url=url))
    await driver.start()
    held: list[Delivery] = []
    full = asyncio.Event()

    def sink(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) >= count:
            full.set()

    await driver.attach(queue, sink, count, {})
    await full.wait()
    print("holding " + ",".join(str(d.attempts) for d in held), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], sys.argv[2], int(sys.argv[3])))
