"""A worker process for the SIGKILL tests: takes deliveries, never acks them, waits to die.

    python -m tests.drivers.amqp_worker URL QUEUE COUNT [DUE]

Once it holds COUNT unsettled deliveries it prints one line, `holding <attempts,...>`,
and sleeps until the test kills it with SIGKILL. With DUE (epoch seconds) it nacks each
of them for a retry at DUE instead, waits until the broker stored every retry and saw
every original acked, prints `retried <ids,...>` and sleeps until killed.
"""

from __future__ import annotations

import asyncio
import sys

from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.message import Delivery, Outcome
from tests.waiting import wait_until


async def hold(url: str, queue: str, count: int, due: float | None) -> None:
    driver = AmqpDriver(AmqpSettings(url=url))
    await driver.start()
    held: list[Delivery] = []
    full = asyncio.Event()

    def sink(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) >= count:
            full.set()

    sub = await driver.attach(queue, sink, count, {})
    await full.wait()
    if due is None:
        print("holding " + ",".join(str(d.attempts) for d in held), flush=True)
    else:
        for delivery in held:
            delivery.claim()
            sub.settle(delivery, Outcome.NACK, due)
        # Each retry confirmed by the broker, then its original acked.
        await wait_until(lambda: sub.in_flight == 0, 20, "the retries to be stored")
        print("retried " + ",".join(d.id for d in held), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(hold(arguments[0], arguments[1], int(arguments[2]),
                     float(arguments[3]) if len(arguments) > 3 else None))
