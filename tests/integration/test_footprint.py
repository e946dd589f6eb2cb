"""What a message waiting on the memory driver costs in memory, measured with tracemalloc."""

from __future__ import annotations

import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import relevo
from tests.appfiles import write_app

COUNT = 10_000
BUDGET = 1024  # bytes per queued small message: body, ID, envelope and queue slot


def small(i: int) -> dict[str, Any]:
    return {"id": i, "user": f"user-{i}", "amount": 3 * i}


async def one_by_one(app: relevo.App, queue: str) -> None:
    for i in range(COUNT):
        await app.publish(queue, small(i))


async def in_batches(app: relevo.App, queue: str) -> None:
    for start in range(0, COUNT, 1000):
        await app.publish_batch(queue, [small(i) for i in range(start, start + 1000)])


@pytest.mark.parametrize("codec", ["json/plain", "application/msgpack"])
@pytest.mark.parametrize("publish", [one_by_one, in_batches], ids=["publish", "publish_batch"])
async def test_a_queued_small_dict_message_costs_less_than_a_kilobyte(
    tmp_path: Path, codec: str, publish: Callable[[relevo.App, str], Awaitable[None]]
) -> None:
    """A queued small dict message cost 4 KB: orjson.dumps returns a `bytes` object whose
    allocation is about 4 KB however short the JSON is, and the memory driver kept that
    object for as long as the message waited (1,000,000 messages took 4 GB of RSS)."""
    folder = write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
  codec: {codec}
""")
    async with relevo.load(folder) as app:
        await app.publish("app:tasks", small(-1))  # driver, queue and codec are warm
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await publish(app, "app:tasks")
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert (await app.info("app:tasks"))["message_count"] == COUNT + 1
    assert held / COUNT < BUDGET, f"{held / COUNT:,.0f} bytes per queued message"
