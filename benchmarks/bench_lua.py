"""Lua handlers next to the equivalent Python handlers, through the whole App, same run.

    .venv/bin/python -m benchmarks.bench_lua [--messages 100000] [--rounds 5]

Each case drains `--messages` messages from a memory queue through a consumer shaped
like the documented application (concurrency 4, prefetch 20): the queue is filled
first with the consumer stopped, then the consumer is started and the clock runs until
`info()` reports the queue empty. Lua and Python runs alternate; the best round of each
is kept, and the ratio Lua/Python is what the target (>= 60%) refers to.

A Lua function whose modules include `time` or `queue` can wait, so its handler runs as a
coroutine; the others are called directly. "trivial, can wait" shows the coroutine cost,
"trivial, in threads" the cost of `run_in_thread` (a thread hop per call).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import relevo

BODY = {"id": "task-123", "action": "process", "n": 1}
CHUNK = 1000


async def py_trivial(body: Any) -> bool:
    """The Python twin of `return function(body) return true end`."""
    return True


async def py_decode(body: Any) -> Any:
    """The Python twin of the Lua handler that decodes and reads a field."""
    return body["id"]


@dataclass(frozen=True)
class Case:
    name: str
    lua: str  # handler source
    modules: str  # the Lua function's `modules`: with time or queue it runs as a coroutine
    python: str  # "module:callable"
    settings: str = ""  # more fields of the Lua function entry


TRIVIAL = "return function(body) return true end"
CASES = [
    Case("trivial (return true)", TRIVIAL, "[json]", "benchmarks.bench_lua:py_trivial"),
    Case("json.decode + field", textwrap.dedent("""\
        local json = require("json")
        return function(body)
          local data = json.decode(body)
          return data.id
        end
        """), "[json, logger]", "benchmarks.bench_lua:py_decode"),
    Case("trivial, can wait", TRIVIAL, "[json, queue, time]",
         "benchmarks.bench_lua:py_trivial"),
    Case("trivial, in threads", TRIVIAL, "[json]", "benchmarks.bench_lua:py_trivial",
         "run_in_thread: true"),
]

APP = """\
version: "1.0"
namespace: bench
entries:
  - name: mem
    kind: queue.driver.memory
  - name: tasks
    kind: queue.queue
    driver: mem
  - name: lua_fn
    kind: function.lua
    source: file://handler.lua
    modules: {modules}
    {settings}
  - name: py_fn
    kind: function.python
    handler: "{python}"
  - name: lua_worker
    kind: queue.consumer
    queue: tasks
    func: lua_fn
    concurrency: 4
    prefetch: 20
  - name: py_worker
    kind: queue.consumer
    queue: tasks
    func: py_fn
    concurrency: 4
    prefetch: 20
"""


async def drain(folder: Path, case: Case, consumer: str, count: int) -> float:
    """Messages per second through `consumer` once `count` messages wait in the queue."""
    (folder / "handler.lua").write_text(case.lua)
    (folder / "app.yaml").write_text(
        APP.format(python=case.python, modules=case.modules, settings=case.settings))
    async with relevo.load(folder / "app.yaml") as app:
        await app.start("bench:tasks")
        for first in range(0, count, CHUNK):
            await app.publish_batch("bench:tasks", [BODY] * min(CHUNK, count - first))
        started = time.perf_counter()
        await app.start(f"bench:{consumer}")
        while True:  # the queue's count is the only signal of a drained queue
            if not (await app.info("bench:tasks"))["message_count"]:
                break
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def main(count: int, rounds: int) -> None:
    print(f"draining {count:,} messages per run, concurrency 4, prefetch 20, memory driver;"
          f" best of {rounds}")
    print(f"{'handler':<24} {'Python msg/s':>14} {'Lua msg/s':>12} {'Lua/Python':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in CASES:
            best = {"py_worker": 0.0, "lua_worker": 0.0}
            for _ in range(rounds):
                for consumer in best:
                    best[consumer] = max(best[consumer],
                                         await drain(folder, case, consumer, count))
            python, lua = best["py_worker"], best["lua_worker"]
            print(f"{case.name:<24} {python:>14,.0f} {lua:>12,.0f} {lua / python:>10.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
