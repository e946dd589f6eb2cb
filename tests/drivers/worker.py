"""A worker process for the SIGKILL checks of every driver: killed while it holds work.

    python -m tests.drivers.worker KIND SETTINGS_JSON QUEUE PREFETCH MODE [DUE]

KIND is a driver kind (`queue.driver.redis`), SETTINGS_JSON its settings as the test's
own driver has them (so both share one store). MODE:

- `hold`: once it holds PREFETCH unsettled deliveries, prints `holding <attempts,...>`
  and sleeps until killed: every message it holds must come back, one attempt more.
- `retry`: the same, then nacks each for a retry at DUE (epoch seconds), closes the
  subscription (every retry stored, every original gone), prints `retried <ids,...>`
  and sleeps until killed: no retry may be lost or come early.
- `ack`: prints `ready` as it attaches, then for each delivery prints `handled <id>`
  before acking it, the order a real handler keeps, until killed mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import sys

from relevo.drivers.catalog import DRIVER_KINDS
from relevo.message import Delivery, Outcome


async def main(kind: str, settings_json: str, queue: str, prefetch: int, mode: str,
               due: float | None) -> None:
    spec = DRIVER_KINDS[kind]
    driver = spec.create(spec.settings.model_validate(json.loads(settings_json)))
    await driver.start()
    if mode == "ack":
        def handle(delivery: Delivery) -> None:
            print(f"handled {delivery.id}", flush=True)
            delivery.ack()

        print("ready", flush=True)  # before attaching: deliveries may come from inside it
        await driver.attach(queue, handle, prefetch, {})
        await asyncio.Event().wait()  # until SIGKILL
    held: list[Delivery] = []
    full = asyncio.Event()

    def hold(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) >= prefetch:
            full.set()

    sub = await driver.attach(queue, hold, prefetch, {})
    await full.wait()
    if mode == "hold":
        print("holding " + ",".join(str(d.attempts) for d in held), flush=True)
    else:
        for delivery in held:
            delivery.claim()
            sub.settle(delivery, Outcome.NACK, due)
        await sub.close()  # returns once every queued settlement is stored
        print("retried " + ",".join(d.id for d in held), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(main(arguments[0], arguments[1], arguments[2], int(arguments[3]),
                     arguments[4], float(arguments[5]) if len(arguments) > 5 else None))
