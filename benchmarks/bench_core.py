"""The core path on the memory driver, against a bare asyncio loop in the same process.

- drain: 100,000 pre-published no-op messages through one consumer (concurrency 8,
  prefetch 100) vs an asyncio.Queue drained by 8 tasks that JSON-decode each message;
  the same drain again with a pass-through middleware on every hook (the seam's cost
  once something uses it; without middlewares no chain exists at all);
- publish: 100,000 messages one `await app.publish()` at a time, and in batches;
- memory: peak RSS of a process holding 1,000,000 queued 100-byte messages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import relevo
from benchmarks.handlers import countdown
from benchmarks.harness import app_folder, table
from relevo.message import Delivery
from relevo.middleware import ConsumerScope, Middleware, Settlement
from relevo.middleware.base import HandleNext

N = 100_000
BODY: dict[str, Any] = {"id": "task-0000000", "action": "process", "n": 1}
APP = """\
- name: mem
  kind: queue.driver.memory
  lifecycle: {auto_start: true}
- name: tasks
  kind: queue.queue
  driver: mem
- name: noop
  kind: function.python
  handler: "benchmarks.handlers:noop"
- name: consumer
  kind: queue.consumer
  queue: tasks
  func: noop
  concurrency: 8
  prefetch: 100
"""

async def bare_loop() -> float:
    """The floor any queue library sits on: asyncio.Queue + json.loads, 8 consumer tasks."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    payload = json.dumps(BODY).encode()
    for _ in range(N):
        queue.put_nowait(payload)
    left = N
    done = asyncio.get_running_loop().create_future()

    async def worker() -> None:
        nonlocal left
        while True:
            json.loads(await queue.get())
            left -= 1
            if left == 0:
                done.set_result(None)

    start = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(8)]
    await done
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    return N / elapsed


class PassThrough(Middleware):
    """Does nothing, on every per-message hook: what a chain costs by itself."""

    async def handle(
        self, scope: ConsumerScope, delivery: Delivery, payload: Any, call_next: HandleNext
    ) -> Any:
        return await call_next(delivery, payload)

    def settled(self, scope: ConsumerScope, delivery: Delivery, settlement: Settlement) -> None:
        return None


async def relevo_drain(middlewares: Sequence[Middleware] = ()) -> float:
    app = relevo.load(app_folder(APP), middlewares=middlewares)
    async with app:
        for _ in range(0, N, 10_000):
            await app.publish_batch("bench:tasks", [BODY] * 10_000)
        done = countdown.arm(N)
        start = time.perf_counter()
        await app.start("bench:consumer")
        await done
        elapsed = time.perf_counter() - start
    return N / elapsed


async def relevo_publish(batch: int) -> float:
    app = relevo.load(app_folder(APP))
    async with app:
        start = time.perf_counter()
        if batch == 1:
            publish = app.publish
            for _ in range(N):
                await publish("bench:tasks", BODY)
        else:
            for _ in range(0, N, batch):
                await app.publish_batch("bench:tasks", [BODY] * batch)
        elapsed = time.perf_counter() - start
        assert (await app.info("bench:tasks"))["message_count"] == N
    return N / elapsed


async def bare_publish() -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    start = time.perf_counter()
    for _ in range(N):
        queue.put_nowait(json.dumps(BODY).encode())
    return N / (time.perf_counter() - start)


RSS_SCRIPT = """
import asyncio, sys
import relevo
from benchmarks.harness import app_folder
from benchmarks.bench_core import APP
def peak_kb():  # VmHWM, unlike ru_maxrss, does not carry the forking parent's peak over
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
async def main():
    app = relevo.load(app_folder(APP))
    async with app:
        before = peak_kb()
        for batch in range(100):  # distinct 100-byte bodies, as real messages would be
            bodies = [b"%0100d" % (batch * 10_000 + i) for i in range(10_000)]
            await app.publish_batch("bench:tasks", bodies)
        info = await app.info("bench:tasks")
        after = peak_kb()
        print(before, after, info["message_count"])
asyncio.run(main())
"""


def peak_rss_mb() -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]) / 1024, int(out[1]) / 1024, int(out[2])


async def main() -> None:
    before, after, count = peak_rss_mb()  # first, in a fresh process
    bare = await bare_loop()
    drain = await relevo_drain()
    chained = await relevo_drain([PassThrough()])
    table(f"drain {N:,} messages (concurrency 8, prefetch 100)", [
        ("asyncio.Queue + json.loads, 8 tasks (baseline)", bare),
        ("relevo memory driver -> consumer -> handler", drain),
        ("  the same, a pass-through middleware", chained),
    ], "asyncio.Queue + json.loads, 8 tasks (baseline)")
    print(f"  a pass-through middleware on handle + settled: {chained / drain:.2f}x "
          "the drain without middlewares")
    baseline_publish = await bare_publish()
    single = await relevo_publish(1)
    batched = await relevo_publish(1000)
    table(f"publish {N:,} messages", [
        ("asyncio.Queue.put_nowait(json.dumps) (baseline)", baseline_publish),
        ("relevo await app.publish(), one at a time", single),
        ("relevo await app.publish_batch(), 1,000 a call", batched),
    ], "asyncio.Queue.put_nowait(json.dumps) (baseline)")
    print(f"\nmemory: {count:,} queued 100-byte messages: peak RSS {after:,.0f} MB "
          f"(process before publishing: {before:,.0f} MB)")


if __name__ == "__main__":
    asyncio.run(main())
