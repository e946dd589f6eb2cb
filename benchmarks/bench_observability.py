"""What observability costs, as ratios against the same run without it (same process,
interleaved rounds, median of the per-round ratios; the machine is shared, so absolute
figures are noise and only the ratios mean something).

- memory drain with a `metrics.prometheus` entry vs without (goal >= 0.95);
- Redis drain with a `metrics.prometheus` entry vs without (goal >= 0.98);
- memory drain with opentelemetry imported and no tracer provider vs without (>= 0.98),
  then, for scale, with an SDK tracer provider (spans made, none exported);
- one scrape of an application with 50 queues and 50 consumers (goal < 50 ms).

Memory drains are rated per second of this process's CPU time (`time.process_time`):
on a machine other work shares, wall time measures the neighbours more than relevo.
Redis drains are rated per wall second: the broker's share of the work is not ours.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import relevo
from benchmarks.broker_rows import drain_app
from benchmarks.handlers import countdown
from benchmarks.harness import app_folder

BODY: dict[str, Any] = {"id": "task-0000000", "action": "process", "n": 1}
ROUNDS = 5
MEMORY_N = 50_000
REDIS_N = 10_000
METRICS = """\
- name: metrics
  kind: metrics.prometheus
  listen: 127.0.0.1:0
  lifecycle: {auto_start: true}
"""


def app_yaml(driver: str, metrics: bool, prefix: str = "") -> str:
    driver_entry = (
        "- name: drv\n  kind: queue.driver.memory\n  lifecycle: {auto_start: true}\n"
        if driver == "memory" else
        "- name: drv\n  kind: queue.driver.redis\n  url: redis://127.0.0.1:6379/0\n"
        f"  key_prefix: '{prefix}'\n  lifecycle: {{auto_start: true}}\n"
    )
    return driver_entry + """\
- name: tasks
  kind: queue.queue
  driver: drv
- name: noop
  kind: function.python
  handler: "benchmarks.handlers:noop"
- name: consumer
  kind: queue.consumer
  queue: tasks
  func: noop
  concurrency: 8
  prefetch: 100
""" + (METRICS if metrics else "")


async def drain(driver: str, metrics: bool, count: int) -> float:
    prefix = f"relevo-bench-obs-{uuid.uuid4().hex[:8]}:"
    app = relevo.load(app_folder(app_yaml(driver, metrics, prefix)))
    async with app:
        for start in range(0, count, 5_000):
            await app.publish_batch("bench:tasks", [BODY] * min(5_000, count - start))
        if driver == "redis":
            rate = await drain_app(app, "bench:consumer", count)
        else:
            done = countdown.arm(count)
            cpu = time.process_time()
            await app.start("bench:consumer")
            await done
            rate = count / (time.process_time() - cpu)
    if driver == "redis":
        await _drop_redis_keys(prefix)
    return rate


async def _drop_redis_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def interleaved(
    base: Callable[[], Awaitable[float]], other: Callable[[], Awaitable[float]]
) -> tuple[float, float, float]:
    """Median rate of each and the median of the per-round ratios other/base."""
    bases, others, ratios = [], [], []
    for n in range(ROUNDS):
        first, second = (base, other) if n % 2 == 0 else (other, base)
        a = await first()
        b = await second()
        base_rate, other_rate = (a, b) if n % 2 == 0 else (b, a)
        bases.append(base_rate)
        others.append(other_rate)
        ratios.append(other_rate / base_rate)
    return statistics.median(bases), statistics.median(others), statistics.median(ratios)


def tracing_installed() -> bool:
    from relevo.tracing.install import wanted

    return wanted()


def row(name: str, base: float, other: float, ratio: float, goal: str) -> None:
    print(f"  {name:<44} {base:>10,.0f} {other:>10,.0f} {ratio:>7.3f}x  goal {goal}")


async def scrape_ms(queues: int = 50, scrapes: int = 20) -> float:
    entries = ["- name: mem\n  kind: queue.driver.memory\n  lifecycle: {auto_start: true}\n",
               "- name: noop\n  kind: function.python\n  handler: 'benchmarks.handlers:noop'\n",
               METRICS.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  queue_cache: 0s")]
    for n in range(queues):
        entries.append(f"- name: q{n}\n  kind: queue.queue\n  driver: mem\n")
        entries.append(f"- name: c{n}\n  kind: queue.consumer\n  queue: q{n}\n  func: noop\n"
                       "  lifecycle: {auto_start: true}\n")
    app = relevo.load(app_folder("".join(entries)))
    async with app:
        assert app._supervisor is not None
        port = app._supervisor.services["bench:metrics"].service.port  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port}/metrics"

        def get() -> float:
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
            return (time.perf_counter() - started) * 1000

        times = [await asyncio.to_thread(get) for _ in range(scrapes)]
    return statistics.median(times)


async def main() -> None:
    print(f"  {'':44} {'without/s':>10} {'with/s':>10} {'ratio':>8}")
    base, other, ratio = await interleaved(
        lambda: drain("memory", False, MEMORY_N), lambda: drain("memory", True, MEMORY_N)
    )
    row("memory drain, metrics.prometheus entry", base, other, ratio, ">= 0.95")
    if "--no-redis" not in sys.argv:
        base, other, ratio = await interleaved(
            lambda: drain("redis", False, REDIS_N), lambda: drain("redis", True, REDIS_N)
        )
        row("redis drain, metrics.prometheus entry", base, other, ratio, ">= 0.98")

    import opentelemetry.trace  # imported, no provider set: tracing must not be installed

    base, other, ratio = await interleaved(
        lambda: drain("memory", False, MEMORY_N), lambda: drain("memory", False, MEMORY_N)
    )
    assert not tracing_installed(), "no provider is set"
    row("memory drain, opentelemetry, no provider", base, other, ratio, ">= 0.98")
    from opentelemetry.sdk.trace import TracerProvider

    opentelemetry.trace.set_tracer_provider(TracerProvider())  # spans made, not exported
    assert tracing_installed()
    traced = await drain("memory", False, MEMORY_N)
    print(f"  {'memory drain, SDK provider (for scale)':<44} {base:>10,.0f} {traced:>10,.0f} "
          f"{traced / base:>7.3f}x")
    print(f"\n  scrape, 50 queues and 50 consumers: {await scrape_ms():.1f} ms (median of 20;"
          " goal < 50 ms)")


if __name__ == "__main__":
    asyncio.run(main())
