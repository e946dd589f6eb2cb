"""What the broker benchmarks share: a row of figures, the table, and the two drains."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.handlers import countdown
from relevo.drivers.base import Driver
from relevo.message import Delivery


@dataclass
class Row:
    name: str
    publish: float | None  # messages per second, None when not measured
    drain: float | None
    note: str = ""


def rate(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


def table(rows: list[Row], baseline: Row) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    def ratio(value: float | None, base: float | None) -> str:
        return "-" if value is None or not base else f"{value / base:.2f}x"

    lines = [
        f"{'':42} {'publish/s':>10} {'vs raw':>7} {'drain/s':>10} {'vs raw':>7}  note",
        "-" * 110,
    ]
    for row in rows:
        lines.append(
            f"{row.name:42} {cell(row.publish):>10} {ratio(row.publish, baseline.publish):>7} "
            f"{cell(row.drain):>10} {ratio(row.drain, baseline.drain):>7}  {row.note}"
        )
    return "\n".join(lines)


async def drain_driver(
    driver: Driver, queue: str, total: int, concurrency: int, prefetch: int
) -> float:
    """Drain with `concurrency` workers acking from the prefetch buffer, as a consumer does."""
    buffer: asyncio.Queue[Delivery] = asyncio.Queue()
    done = asyncio.Event()
    seen = 0

    async def worker() -> None:
        nonlocal seen
        while True:
            delivery = await buffer.get()
            delivery.ack()
            seen += 1
            if seen >= total:
                done.set()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    started = time.perf_counter()
    sub = await driver.attach(queue, buffer.put_nowait, prefetch, {})
    await done.wait()
    drained = rate(total, started)
    await sub.close()
    for task in workers:
        task.cancel()
    return drained


async def drain_app(app: Any, consumer_id: str, total: int) -> float:
    """Start a consumer whose function is `benchmarks.handlers:noop`; time `total` calls."""
    done = countdown.arm(total)
    started = time.perf_counter()
    await app.start(consumer_id)
    await done
    return rate(total, started)
