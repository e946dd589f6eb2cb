"""Boot examples/lua/app.yaml, publish a few tasks and wait until the Lua handler drained them.

    .venv/bin/python examples/lua/run.py
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import relevo

QUEUE = "app.queue:tasks"


async def main(count: int = 10) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    async with relevo.load(Path(__file__).with_name("app.yaml")) as app:
        await app.publish_batch(QUEUE, [{"id": f"task-{n}", "action": "process"}
                                        for n in range(count)])
        for _ in range(1000):  # up to 10 s
            if not (await app.info(QUEUE))["message_count"]:
                break
            await asyncio.sleep(0.01)
        print("left in queue:", await app.info(QUEUE))


if __name__ == "__main__":
    asyncio.run(main())
