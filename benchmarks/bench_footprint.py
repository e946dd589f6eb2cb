"""What a queued message costs on the memory driver, published the way users publish.

- footprint: 1,000,000 small dict messages (`{"id": i, "user": "user-i", "amount": 3i}`)
  queued with no consumer, each publish path in a fresh child process so its RSS is clean:
  JSON dicts through `await app.publish` and `publish_batch`, msgpack dicts, raw bytes;
  and, as the baseline, JSON dicts encoded by bare `orjson.dumps` (what the codec did
  before it kept a right-sized copy; 100,000 messages, since it takes about 4 KB each);
- rates: publish 100,000 such dicts one `await app.publish()` at a time, then drain them
  through one consumer, with the codec as shipped vs bare `orjson.dumps`, rounds
  interleaved, median of 5; and the encode alone, its result dropped at once (as a broker
  driver drops a body once sent), where the copy is pure cost.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import timeit
from typing import Any

import orjson

import relevo
from benchmarks.handlers import countdown
from benchmarks.harness import app_folder, table
from relevo import codecs

N = 1_000_000
BASELINE_N = 100_000
RATE_N = 100_000
ROUNDS = 5
APP = """\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
  codec: {codec}
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
JSON, MSGPACK = "json/plain", "application/msgpack"


def small(i: int) -> dict[str, Any]:
    return {"id": i, "user": f"user-{i}", "amount": 3 * i}


def raw(i: int) -> bytes:
    return b'{"id":%d,"user":"user-%d","amount":%d}' % (i, i, 3 * i)


def _bare_orjson(data: Any) -> bytes:
    """The JSON codec's encode before the fix: orjson's bytes as they come."""
    return data if isinstance(data, bytes) else orjson.dumps(data)


def use_bare_orjson() -> None:
    """Make apps loaded from now on encode JSON with bare orjson.dumps (the baseline)."""
    codecs.CODECS[JSON] = codecs.Codec(JSON, "application/json", _bare_orjson, orjson.loads)


SHIPPED = codecs.CODECS[JSON]


# -- footprint, one child process per case ----------------------------------------------

CASES: dict[str, tuple[str, str, str, int]] = {  # label -> codec, path, body, messages
    "JSON dict, bare orjson.dumps (before, baseline)": ("bare", "publish", "dict", BASELINE_N),
    "JSON dict, await app.publish": (JSON, "publish", "dict", N),
    "JSON dict, publish_batch of 1,000": (JSON, "batch", "dict", N),
    "msgpack dict, await app.publish": (MSGPACK, "publish", "dict", N),
    "msgpack dict, publish_batch of 1,000": (MSGPACK, "batch", "dict", N),
    "raw bytes (JSON text), await app.publish": (JSON, "publish", "bytes", N),
}


def peak_kb() -> int:
    """VmHWM: the process's own peak RSS (ru_maxrss would carry the forking parent's)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def fill(codec: str, path: str, body: str, count: int) -> dict[str, int]:
    """In the child: queue `count` messages, report RSS before and at peak."""
    if codec == "bare":
        use_bare_orjson()
        codec = JSON
    make = small if body == "dict" else raw
    app = relevo.load(app_folder(APP.format(codec=codec)))
    async with app:
        await app.publish("bench:tasks", make(-1))  # driver and queue started
        before = peak_kb()
        if path == "publish":
            publish = app.publish
            for i in range(count):
                await publish("bench:tasks", make(i))
        else:
            for first in range(0, count, 1000):
                batch = [make(i) for i in range(first, first + 1000)]
                await app.publish_batch("bench:tasks", batch)
        assert (await app.info("bench:tasks"))["message_count"] == count + 1
        return {"before_kb": before, "peak_kb": peak_kb()}


def footprint(label: str) -> tuple[int, float, float]:
    """Messages, bytes per queued message and peak RSS in MB, from a fresh child process."""
    codec, path, body, count = CASES[label]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_footprint", "--child", codec, path, body,
         str(count)], capture_output=True, text=True, check=True,
    ).stdout
    result = json.loads(out)
    per_message = (result["peak_kb"] - result["before_kb"]) * 1024 / count
    return count, per_message, result["peak_kb"] / 1024


# -- rates, shipped codec vs bare orjson, in this process -------------------------------

async def publish_and_drain() -> tuple[float, float]:
    app = relevo.load(app_folder(APP.format(codec=JSON)))
    async with app:
        publish = app.publish
        start = time.perf_counter()
        for i in range(RATE_N):
            await publish("bench:tasks", small(i))
        published = time.perf_counter()
        done = countdown.arm(RATE_N)
        await app.start("bench:consumer")
        await done
        drained = time.perf_counter()
    return RATE_N / (published - start), RATE_N / (drained - published)


async def rates() -> dict[str, tuple[float, float]]:
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "shipped": []}
    for _ in range(ROUNDS):
        for name in runs:
            if name == "bare":
                use_bare_orjson()
            else:
                codecs.CODECS[JSON] = SHIPPED
            runs[name].append(await publish_and_drain())
    codecs.CODECS[JSON] = SHIPPED
    return {
        name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for name, rs in runs.items()
    }


def encode_rates() -> tuple[float, float]:
    """Encodes per second of one small dict, bare orjson vs the shipped codec; best of 5."""
    body, shipped = small(123_456), SHIPPED.encode
    number = 200_000

    def best(fn: Any) -> float:
        return number / min(timeit.repeat(lambda: fn(body), number=number, repeat=5))

    return best(_bare_orjson), best(shipped)


def main() -> None:
    print("\nfootprint: small dict messages queued on the memory driver, no consumer "
          "(each case in a fresh process)")
    print(f"  {'':<50} {'messages':>10} {'bytes/msg':>10} {'peak RSS':>10}")
    for label in CASES:
        count, per_message, peak = footprint(label)
        print(f"  {label:<50} {count:>10,} {per_message:>10,.0f} {peak:>7,.0f} MB", flush=True)
    measured = asyncio.run(rates())
    bare, shipped = measured["bare"], measured["shipped"]
    base = "bare orjson.dumps (before, baseline)"
    title = f"{RATE_N:,} small dicts, median of {ROUNDS} interleaved rounds"
    table(f"publish {title}: await app.publish(), one at a time", [
        (base, bare[0]), ("right-sized copy (shipped)", shipped[0])], base)
    table(f"drain {title}: one consumer, concurrency 8, prefetch 100", [
        (base, bare[1]), ("right-sized copy (shipped)", shipped[1])], base)
    bare_encode, shipped_encode = encode_rates()
    table("encode one small dict, result dropped at once (best of 5)", [
        (base, bare_encode), ("right-sized copy (shipped)", shipped_encode)], base,
        unit="encodes/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        codec, path, body, count = sys.argv[2:6]
        print(json.dumps(asyncio.run(fill(codec, path, body, int(count)))))
    else:
        main()
