"""The testing kit: what one `in_memory` application costs a test.

A test suite builds an application per test, so start-up and stop must be cheap: the
quick-start application (examples/quickstart/app.yaml) loaded with
`relevo.testing.in_memory`, started and stopped, against the same on the memory driver
it declares (`relevo.load`), in the same process. Goal: under 50 ms per test. Then a
one-hour retry policy driven by `app.clock.advance`, which must take well under a second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import relevo
from relevo.testing import in_memory

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart" / "app.yaml"
ROUNDS = 50


async def start_stop_ms(make: Any) -> float:
    """Median wall time of load + start + stop, in milliseconds."""
    times = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        async with make(QUICKSTART):
            pass
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def one_hour_retry_s() -> float:
    """A handler that fails with Retry("1h") twice, tested by moving the clock."""
    calls = 0

    async def handler(task: Any) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise relevo.Retry("1h")

    app = in_memory({"version": "1.0", "namespace": "bench", "entries": [
        {"name": "mem", "kind": "queue.driver.memory"},
        {"name": "tasks", "kind": "queue.queue", "driver": "mem"},
        {"name": "handler", "kind": "function.python", "handler": handler},
        {"name": "worker", "kind": "queue.consumer", "queue": "tasks", "func": "handler",
         "lifecycle": {"auto_start": True}},
    ]})
    began = time.perf_counter()
    async with app:
        await app.publish("bench:tasks", {"id": 1})
        for _ in range(3):
            await app.join()
            app.clock.advance(3600)
        await app.join()
    assert calls == 3
    return time.perf_counter() - began


async def main() -> None:
    await start_stop_ms(in_memory)  # warm the imports and the handler module
    plain = await start_stop_ms(relevo.load)
    kit = await start_stop_ms(in_memory)
    print(f"\nquick-start application: load + start + stop, median of {ROUNDS} (goal < 50 ms)")
    print(f"  {'relevo.load (memory driver as declared)':<46} {plain:>9.1f} ms  1.00x")
    print(f"  {'relevo.testing.in_memory':<46} {kit:>9.1f} ms  {kit / plain:.2f}x")
    print(f"\none-hour retry policy, two retries, with clock.advance: "
          f"{await one_hour_retry_s() * 1000:.1f} ms (goal < 1 s)")


if __name__ == "__main__":
    asyncio.run(main())
