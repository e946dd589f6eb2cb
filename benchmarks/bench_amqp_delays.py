"""Lateness of delayed messages on RabbitMQ: handler start minus due time, through an app.

    .venv/bin/python -m benchmarks.bench_amqp_delays [--messages 10000] [--rate 300]

10,000 messages, each batch of 10 with its own delay drawn from 0.1-2 s, published with
`at=` through a YAML app on the AMQP driver at a steady `--rate` (messages per second);
one consumer (concurrency 8, prefetch 500) whose handler records its start minus the
due time. A negative lateness (early) is counted and must stay 0. Baseline, same
process and broker: the same messages without delay (the plain publish-to-handler
latency). Target: p99 <= 250 ms. The rate is steady because the delay ladder costs the
broker several quorum writes per message: a burst beyond the broker's delayed rate
only measures the backlog (docs/drivers/amqp.md). Absolute figures move with the
machine's load (2 shared cores): read the ratio. Needs RabbitMQ at $RELEVO_AMQP_URL
(default amqp://guest:guest@127.0.0.1:5672/); queues and their ladders are deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

from tests.amqp_cleanup import delete_queues

import relevo
from benchmarks import handlers
from benchmarks.harness import app_folder, quantile
from relevo.drivers.amqp import delays

URL = os.environ.get("RELEVO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BATCH = 10
TARGET_MS = 250.0


def app_yaml(queue: str) -> str:
    return f"""\
- name: rabbit
  kind: queue.driver.amqp
  url: "{URL}"
- name: tasks
  kind: queue.queue
  driver: rabbit
  queue_name: {queue}
- name: fn
  kind: function.python
  handler: "benchmarks.handlers:record_lateness"
- name: consumer
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: 8
  prefetch: 500
  lifecycle: {{auto_start: true}}
"""


async def lateness(messages: int, rate: float, delayed: bool) -> list[float]:
    """Seconds each handler started after its message's due time."""
    queue = f"relevo-bench-delay-{uuid.uuid4().hex[:8]}"
    rand = random.Random(7)
    handlers.lateness.clear()
    try:
        async with relevo.load(app_folder(app_yaml(queue))) as app:
            done = handlers.countdown.arm(messages)
            start = time.monotonic()
            for first in range(0, messages, BATCH):
                await asyncio.sleep(max(0.0, start + first / rate - time.monotonic()))
                due = time.time() + (rand.uniform(0.1, 2.0) if delayed else 0.0)
                bodies = [{"n": n, "due": due} for n in range(first, first + BATCH)]
                await app.publish_batch("bench:tasks", bodies, at=due if delayed else None)
            await asyncio.wait_for(done, 120)
    finally:
        await delete_queues([queue], URL)  # and its delay ladder
    return list(handlers.lateness)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0, help="messages published per second")
    args = parser.parse_args()
    plain = await lateness(args.messages, args.rate, delayed=False)
    late = await lateness(args.messages, args.rate, delayed=True)
    base = quantile(plain, 0.99) * 1000
    print(f"\nAMQP lateness: {args.messages:,} messages at {args.rate:,.0f}/s, delays 0.1-2 s, "
          f"handler start - due time (ladder resolution {delays.UNIT_S * 1000:.0f} ms)")
    print(f"  {'':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'early':>6} "
          f"{'p99 vs undelayed':>17} {'target':>8}")
    for name, values in (("amqp, undelayed (baseline)", plain), ("amqp, delayed", late)):
        p50, p99 = quantile(values, 0.5) * 1000, quantile(values, 0.99) * 1000
        early = sum(1 for v in values if v < 0)
        goal = f"{TARGET_MS:.0f} ms" if values is late else ""
        print(f"  {name:<28} {p50:>8.1f} {p99:>8.1f} {max(values) * 1000:>8.1f} "
              f"{early:>6} {p99 / base:>16.1f}x {goal:>8}")


if __name__ == "__main__":
    asyncio.run(main())
