"""Delayed messages: how late they are, how fast they are scheduled, what waiting costs.

    .venv/bin/python -m benchmarks.bench_delays [--messages 10000] [--waiting 1000000]

- lateness: 10,000 messages, each batch of 10 with its own delay drawn from 0.1-2 s,
  published with `at=` through an app; the handler records its start minus the due
  time. Baseline, same process and driver: the same messages without delay (the plain
  publish-to-handler latency). Targets: p99 <= 10 ms on memory, <= 50 ms on Redis, and
  none early. `DRIVERS` holds one entry per driver; another broker adds its own
  (AMQP has its driver-level row in `bench_amqp_delays.py`, target 250 ms).
- scheduling rate on Redis: delayed publishes/s, one `await app.publish(delay=)` at a
  time, 100 concurrent publishers, and batches of 100, against undelayed publishes.
- waiting: 1,000,000 delayed messages in Redis while a worker process drains other
  messages; the worker's RSS before and after (it must stay flat: the mover reads at
  most 1,000 due members at a time and none are due).

Needs Redis at $RELEVO_REDIS_URL (default redis://127.0.0.1:6379/0); every key lives
under a throwaway prefix, deleted afterwards. The machine is shared (2 cores): read
ratios and targets, not absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

import relevo
from benchmarks import handlers
from benchmarks.harness import app_folder, quantile
from relevo.drivers.base import QueueSpec
from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.settings import RedisSettings
from relevo.message import Envelope

ROOT = str(Path(__file__).resolve().parents[1])
URL = os.environ.get("RELEVO_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH = 10


@dataclass(frozen=True)
class DriverRow:
    yaml: str  # the driver entry, named `broker`
    target_ms: float  # p99 lateness goal


DRIVERS: dict[str, DriverRow] = {
    "memory": DriverRow("kind: queue.driver.memory", 10.0),
    "redis": DriverRow(f"kind: queue.driver.redis\n  url: {URL}\n  key_prefix: '{{prefix}}'",
                       50.0),
}


def app_yaml(driver: str, prefix: str) -> str:
    return f"""\
- name: broker
  {DRIVERS[driver].yaml.format(prefix=prefix)}
  lifecycle: {{auto_start: true}}
- name: tasks
  kind: queue.queue
  driver: broker
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


async def lateness(driver: str, messages: int, delayed: bool) -> list[float]:
    """Seconds each handler started after its message's due time."""
    prefix = f"relevo-bench:{uuid.uuid4().hex[:8]}:"
    rand = random.Random(7)
    handlers.lateness.clear()
    try:
        async with relevo.load(app_folder(app_yaml(driver, prefix))) as app:
            done = handlers.countdown.arm(messages)
            for first in range(0, messages, BATCH):
                due = time.time() + (rand.uniform(0.1, 2.0) if delayed else 0.0)
                bodies = [{"n": n, "due": due} for n in range(first, first + BATCH)]
                await app.publish_batch("bench:tasks", bodies, at=due if delayed else None)
                # a steady stream, not one burst that holds the loop past the first dues
                await asyncio.sleep(0 if delayed else 0.0005)
            await asyncio.wait_for(done, 120)
    finally:
        await delete_keys(prefix)
    return list(handlers.lateness)


async def lateness_table(messages: int) -> None:
    print(f"\nlateness: {messages:,} messages, delays 0.1-2 s, handler start - due time")
    print(f"  {'':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'early':>6} "
          f"{'p99 vs undelayed':>17} {'target':>8}")
    for driver, row in DRIVERS.items():
        plain = await lateness(driver, messages, delayed=False)
        late = await lateness(driver, messages, delayed=True)
        base = quantile(plain, 0.99) * 1000
        for name, values in ((f"{driver}, undelayed (baseline)", plain),
                             (f"{driver}, delayed", late)):
            p50, p99 = quantile(values, 0.5) * 1000, quantile(values, 0.99) * 1000
            early = sum(1 for v in values if v < -0.002)
            goal = f"{row.target_ms:.0f} ms" if values is late else ""
            print(f"  {name:<28} {p50:>8.1f} {p99:>8.1f} {max(values) * 1000:>8.1f} "
                  f"{early:>6} {p99 / base:>16.1f}x {goal:>8}")


async def scheduling_rate(count: int) -> None:
    prefix = f"relevo-bench:{uuid.uuid4().hex[:8]}:"
    yaml = app_yaml("redis", prefix).split("- name: fn")[0]  # no consumer
    rows: list[tuple[str, float]] = []
    try:
        async with relevo.load(app_folder(yaml)) as app:
            async def timed(name: str, delay: float | None, mode: str) -> None:
                start = time.perf_counter()
                total = count // 5 if mode == "one" else count  # a round trip each: fewer
                if mode == "one":
                    for _ in range(total):
                        await app.publish("bench:tasks", {"n": 1}, delay=delay)
                elif mode == "concurrent":
                    async def publisher() -> None:
                        for _ in range(count // 100):
                            await app.publish("bench:tasks", {"n": 1}, delay=delay)
                    await asyncio.gather(*(publisher() for _ in range(100)))
                else:
                    for _ in range(count // 100):
                        await app.publish_batch("bench:tasks", [{"n": 1}] * 100, delay=delay)
                rows.append((name, total / (time.perf_counter() - start)))

            for mode, label in (("one", "one at a time"), ("concurrent", "100 publishers"),
                                ("batch", "batches of 100")):
                await timed(f"undelayed, {label}", None, mode)
                await timed(f"delayed 1h, {label}", 3600.0, mode)
    finally:
        await delete_keys(prefix)
    print(f"\nscheduling on Redis: {count:,} publishes per row, {count // 5:,} one at a time "
          "(target: delayed >= 10,000/s)")
    print(f"  {'':<34} {'msgs/s':>10} {'vs undelayed':>13}")
    for n in range(0, len(rows), 2):
        (plain_name, plain), (name, rate) = rows[n], rows[n + 1]
        print(f"  {plain_name:<34} {plain:>10,.0f} {1.0:>12.2f}x")
        print(f"  {name:<34} {rate:>10,.0f} {rate / plain:>12.2f}x")


WORKER = """
import asyncio, sys
import relevo
from benchmarks.harness import app_folder
from benchmarks.bench_delays import app_yaml
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
async def main():
    async with relevo.load(app_folder(app_yaml("redis", sys.argv[1]))):
        print("ready", flush=True)
        while True:
            print(rss_kb(), flush=True)
            await asyncio.sleep(0.5)
asyncio.run(main())
"""


async def waiting_rss(waiting: int) -> None:
    """A worker's RSS while `waiting` delayed messages sit in Redis and it drains others."""
    prefix = f"relevo-bench:{uuid.uuid4().hex[:8]}:"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, prefix, stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    driver = RedisDriver(RedisSettings(url=URL, key_prefix=prefix))
    try:
        assert worker.stdout is not None
        assert (await worker.stdout.readline()).strip() == b"ready"
        before = await settle_rss(worker)
        await driver.start()
        await driver.declare(QueueSpec("tasks", {}))
        body = b'{"id": "task-0000000", "action": "remind", "n": 1, "due": 0}'
        start = time.perf_counter()
        for first in range(0, waiting, 10_000):
            envelopes = [Envelope(f"w-{n}", body) for n in range(first, first + 10_000)]
            await driver.publish("tasks", envelopes, time.time() + 3600)
        stored_s = time.perf_counter() - start
        for _ in range(20):  # the worker handles other messages meanwhile
            await driver.publish("tasks", [Envelope(f"r-{uuid.uuid4().hex}", body)] * 500)
            await asyncio.sleep(0.2)
        after = await settle_rss(worker)
        delayed = (await driver.info("tasks")).delayed
    finally:
        worker.kill()
        await worker.wait()
        await driver.stop()
        await delete_keys(prefix)
    print(f"\nwaiting: {delayed:,} delayed messages in Redis (stored in {stored_s:.1f} s, "
          f"{waiting / stored_s:,.0f}/s in batches of 10,000)")
    print(f"  worker RSS before {before / 1024:,.1f} MB, after {after / 1024:,.1f} MB "
          f"({after / before:.2f}x)")


async def settle_rss(worker: asyncio.subprocess.Process) -> int:
    """The worker's RSS in KB, read over a few reports (the last of three)."""
    assert worker.stdout is not None
    values = [int(await worker.stdout.readline()) for _ in range(3)]
    return values[-1]


async def delete_keys(prefix: str) -> None:
    async with Redis.from_url(URL) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)


async def main(args: Any) -> None:
    await lateness_table(args.messages)
    await scheduling_rate(10_000)
    await waiting_rss(args.waiting)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args()))
