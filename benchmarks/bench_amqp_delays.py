"""Lateness of delayed messages on AMQP: how long after its due time a message reaches its handler.

    .venv/bin/python -m benchmarks.bench_amqp_delays [--messages 10000] [--rate 300]

10,000 messages, each with a delay drawn uniformly from 0.1-2 s, published by the AMQP
driver in batches of 10 at a steady `--rate` (messages per second), each batch with its
own due time; one consumer (prefetch 500) acks each at once and records when it came.
Lateness = arrival minus due time; a negative one (early) is counted and must be 0.
The baseline, measured in the same process and broker: the same messages without
delay, whose "lateness" is the plain publish-to-handler latency. Ratios compare the
two; absolute figures move with the machine's load (2 shared cores here).
Needs RabbitMQ at $RELEVO_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

import aiormq

from relevo.drivers.amqp import delays
from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.base import QueueSpec
from relevo.message import Delivery, Envelope

URL = os.environ.get("RELEVO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BATCH = 10
PREFETCH = 500
BODY = b'{"id": "task-123", "action": "remind", "n": 1}'


async def run(driver: AmqpDriver, messages: int, rate: float, delayed: bool) -> list[float]:
    """Lateness in seconds of each message, in arrival order."""
    queue = f"relevo-bench-delay-{uuid.uuid4().hex[:8]}"
    await driver.declare(QueueSpec(queue, {"durable": True}))
    due_of: dict[str, float] = {}
    lateness: list[float] = []
    done = asyncio.Event()

    def sink(delivery: Delivery) -> None:
        lateness.append(time.time() - due_of[delivery.id])
        delivery.ack()
        if len(lateness) >= messages:
            done.set()

    sub = await driver.attach(queue, sink, PREFETCH, {})
    rand = random.Random(7)
    start = time.monotonic()
    try:
        for first in range(0, messages, BATCH):
            await asyncio.sleep(max(0.0, start + first / rate - time.monotonic()))
            batch = [Envelope(f"d-{n}", BODY) for n in range(first, first + BATCH)]
            due = time.time() + (rand.uniform(0.1, 2.0) if delayed else 0.0)
            for envelope in batch:
                due_of[envelope.id] = due
            await driver.publish(queue, batch, due if delayed else None)
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await sub.close()
        await delete(queue)
    return lateness


async def delete(queue: str) -> None:
    """Delete the queue and its delay ladder (levels 0 up to the first missing one)."""
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        for level in range(delays.LEVELS):
            name = delays.level_name(queue, level)
            try:
                await channel.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                break
            await channel.queue_delete(name)
            await channel.exchange_delete(name)
    finally:
        await connection.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, lateness: list[float], base_p99: float | None) -> str:
    p50, p99 = quantile(lateness, 0.5) * 1000, quantile(lateness, 0.99) * 1000
    worst = max(lateness) * 1000
    early = sum(1 for x in lateness if x < 0)
    ratio = f"{p99 / base_p99:>8.1f}x" if base_p99 else f"{'1.0x':>9}"
    return f"  {name:<34} {p50:>8.1f} {p99:>8.1f} {worst:>8.1f} {early:>6} {ratio}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0, help="messages published per second")
    args = parser.parse_args()
    driver = AmqpDriver(AmqpSettings(url=URL))
    await driver.start()
    try:
        plain = await run(driver, args.messages, args.rate, delayed=False)
        late = await run(driver, args.messages, args.rate, delayed=True)
    finally:
        await driver.stop()
    base_p99 = quantile(plain, 0.99) * 1000
    print(f"\nAMQP delays: {args.messages:,} messages at {args.rate:,.0f}/s, "
          f"delays 0.1-2 s (ladder resolution {delays.UNIT_S * 1000:.0f} ms)")
    print(f"  {'':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'early':>6} {'p99 vs':>9}")
    print(row("undelayed: publish -> handler", plain, None))
    print(row("delayed: handler start - due", late, base_p99))
    print("  target: delayed p99 <= 250 ms, early = 0")


if __name__ == "__main__":
    asyncio.run(main())
