"""The dashboard and dead-letter tools with 100,000 dead letters in a Redis queue.

1. Every page, timed in-process through the ASGI app (httpx's ASGITransport, so the
   figure is the dashboard's own work plus its Redis calls, not a network stack): p50
   and p95 over `ROUNDS` requests each, first with an empty dead-letter queue (the
   baseline) and then with 100,000 dead letters. Target: p95 under 200 ms.
2. Requeue of all 100,000 to their original queue while its consumer keeps handling
   them, against publishing 100,000 fresh messages to the same queue (the baseline).
   Target: under 30 s.

Bounded: about a minute. The machine is shared, so read the ratios, not the absolute
figures. Needs Redis on 127.0.0.1:6379; every key it makes carries a unique prefix and
is deleted at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

import relevo
from benchmarks.harness import app_folder
from relevo.app import App
from relevo.dashboard import create_app
from relevo.message import Envelope

DEAD_LETTERS = 100_000
ROUNDS = 40
FILL_BATCH = 5_000
P95_TARGET_MS = 200.0
REQUEUE_TARGET_S = 30.0
REDIS_URL = "redis://127.0.0.1:6379/0"

handled = 0  # in the module the handler entry imports (run as __main__, that is another)


async def handle(body: Any) -> None:
    global handled
    handled += 1


def handled_so_far() -> int:
    from benchmarks import bench_dashboard

    return bench_dashboard.handled


def app_yaml(prefix: str) -> str:
    return f"""\
- name: redis
  kind: queue.driver.redis
  url: {REDIS_URL}
  key_prefix: "{prefix}"
- name: tasks
  kind: queue.queue
  driver: redis
  dead_letter: {{queue: tasks_dead, max_attempts: 3}}
- name: tasks_dead
  kind: queue.queue
  driver: redis
- name: handle
  kind: function.python
  handler: "benchmarks.bench_dashboard:handle"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: handle
  concurrency: 16
  prefetch: 200
"""


async def fill(app: App, count: int) -> list[str]:
    dead = app.queues["bench:tasks_dead"]
    ids = []
    for start in range(0, count, FILL_BATCH):
        batch = [
            Envelope(
                f"dl-{n}", b'{"order": %d, "items": ["tea", "cake"]}' % n,
                {"customer": f"c-{n}", "x_original_queue": "bench:tasks",
                 "x_dead_letter_reason": "ValueError: order has no customer",
                 "x_dead_letter_time": "2026-11-29T00:00:00.000+00:00", "attempts": 3},
                2,
            )
            for n in range(start, min(count, start + FILL_BATCH))
        ]
        await dead.forward(batch)
        ids += [e.id for e in batch]
    return ids


async def time_pages(
    client: httpx.AsyncClient, paths: list[str]
) -> dict[str, tuple[float, float, float]]:
    """(first request, p50, p95) in ms per page."""
    figures = {}
    for path in paths:
        started = time.perf_counter()
        await client.get(path)  # the first: templates compiled, a deep `after` looked up
        first = (time.perf_counter() - started) * 1000
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            answer = await client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
        times.sort()
        figures[path] = (first, statistics.median(times), times[int(len(times) * 0.95) - 1])
    return figures


def pages(after: str | None) -> list[str]:
    dead = "/dead-letters/bench:tasks_dead"
    paths = ["/", "/?partial=1", "/queues/bench:tasks_dead", "/queues/bench:tasks",
             "/dead-letters", dead, f"{dead}?partial=1", "/delayed", "/consumers",
             "/api/queues"]
    if after is not None:
        paths.append(f"{dead}?after={after}&page=1001")  # 50,000 deep, not seen before
    return paths


async def bench_pages(app: App) -> bool:
    web = create_app(app, token=None)
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        empty = await time_pages(client, pages(None))
        ids = await fill(app, DEAD_LETTERS)
        full = await time_pages(client, pages(ids[DEAD_LETTERS // 2]))
    print(f"\npages, p50 / p95 in ms over {ROUNDS} requests "
          f"(empty dead-letter queue, then {DEAD_LETTERS:,} dead letters)")
    print(f"  {'page':<58} {'empty p95':>9} {'first':>7} {'p50':>7} {'p95':>7} "
          f"{'p95 vs empty':>12}")
    worst = 0.0
    for path, (first, p50, p95) in full.items():
        base = empty.get(path)
        ratio = f"{p95 / base[2]:.2f}x" if base else "-"
        print(f"  {path:<58} {base[2] if base else float('nan'):>9.1f} {first:>7.1f} "
              f"{p50:>7.1f} {p95:>7.1f} {ratio:>12}")
        cold = first if "after=" not in path else 0.0  # see the note printed below
        worst = max(worst, p95, cold)
    ok = worst < P95_TARGET_MS
    print(f"  worst p95 {worst:.1f} ms: {'under' if ok else 'OVER'} the "
          f"{P95_TARGET_MS:.0f} ms target. The deep page's first request is the one "
          "lookup of an ID\n  this dashboard never showed (a scan inside Redis); the "
          "next-page links it draws cost none.")
    return ok


async def drained(app: App, queue_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await app.info(queue_id))["message_count"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue_id} did not drain in {timeout_s}s")
        await asyncio.sleep(0.1)


async def bench_requeue_one(app: App) -> int:
    """Requeue one dead letter 90,000 deep: from the head, and from its page's cursor."""
    timings = []
    for message_id, after in (("dl-90001", None), ("dl-90003", "dl-90002")):
        started = time.perf_counter()
        report = await app.requeue_report("bench:tasks_dead", [message_id], after=after)
        timings.append((time.perf_counter() - started) * 1000)
        assert report.moved == 1, report
    print("\nrequeue of one dead letter 90,000 deep (the dashboard passes its page's cursor)")
    print(f"  looked for from the head        {timings[0]:>8.1f} ms")
    print(f"  looked for behind its page      {timings[1]:>8.1f} ms "
          f"{timings[1] / timings[0]:>6.2f}x")
    return len(timings)


async def bench_requeue(app: App, already: int) -> bool:
    await app.start("bench:worker")
    started = time.perf_counter()
    for start in range(0, DEAD_LETTERS, FILL_BATCH):  # batches: each within publish_timeout
        await app.publish_batch(
            "bench:tasks", [{"order": n} for n in range(start, start + FILL_BATCH)]
        )
    publish_s = time.perf_counter() - started
    await drained(app, "bench:tasks", 120)

    before = handled_so_far()
    started = time.perf_counter()
    moved = await app.requeue("bench:tasks_dead")
    requeue_s = time.perf_counter() - started
    during = handled_so_far() - before
    await drained(app, "bench:tasks", 120)
    assert moved == DEAD_LETTERS - already, moved
    assert (await app.info("bench:tasks_dead"))["message_count"] == 0
    print(f"\nrequeue of the {DEAD_LETTERS - already:,} other dead letters on Redis, consumer "
          "(concurrency 16) running")
    print(f"  publish of {DEAD_LETTERS:,} (baseline)       {publish_s:>8.2f} s")
    print(f"  requeue of {DEAD_LETTERS - already:,}                {requeue_s:>8.2f} s "
          f"{requeue_s / publish_s:>6.2f}x  ({during:,} of them handled while it ran)")
    ok = requeue_s < REQUEUE_TARGET_S
    print(f"  {'under' if ok else 'OVER'} the {REQUEUE_TARGET_S:.0f} s target")
    return ok


async def main() -> int:
    prefix = f"relevo-bench-dash:{uuid.uuid4().hex[:8]}:"
    app = relevo.load(app_folder(app_yaml(prefix)))
    await app.open(start=False)
    try:
        pages_ok = await bench_pages(app)
        requeue_ok = await bench_requeue(app, await bench_requeue_one(app))
    finally:
        await app.close()
        async with Redis.from_url(REDIS_URL) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
    return 0 if pages_ok and requeue_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
