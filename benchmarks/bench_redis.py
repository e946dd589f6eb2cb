"""Redis Streams throughput: relevo's Redis driver next to a raw redis-py Streams loop,
and peers where installed.

    .venv/bin/python -m benchmarks.bench_redis [--messages 20000] [--skip-peers]

One process, one consumer (concurrency 16, prefetch 200), small messages. Every run
measures the raw redis-py baseline in the same process (pipelined XADD, 100 per
pipeline; XREADGROUP COUNT 100 + pipelined XACK), so the ratios compare like with like
on this machine. Peers (arq, Dramatiq's Redis broker, taskiq-redis, FastStream's Redis
broker) run only when importable. Needs Redis at $RELEVO_REDIS_URL (default
redis://127.0.0.1:6379/0); every key lives under a throwaway prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

from benchmarks.broker_rows import Row, drain_app, drain_driver, rate, table
from relevo.drivers.base import QueueSpec
from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.settings import RedisSettings
from relevo.message import Envelope

URL = os.environ.get("RELEVO_REDIS_URL", "redis://127.0.0.1:6379/0")
CONCURRENCY = 16
PREFETCH = 200
WINDOW = 100  # messages per pipeline (raw, batch publish) and concurrent publishers
BODY = b'{"id": "task-123", "action": "process", "n": 1}'
PEER_TIMEOUT_S = 60.0
PREFIX = f"relevo-bench:{uuid.uuid4().hex[:8]}:"




async def delete_keys(pattern: str) -> None:
    async with Redis.from_url(URL) as client:
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        for first in range(0, len(keys), 500):
            await client.delete(*keys[first : first + 500])


# -- raw redis-py Streams: the baseline ----------------------------------------------


async def raw_streams(count: int) -> Row:
    stream = f"{PREFIX}raw"
    async with Redis.from_url(URL) as client:
        await client.xgroup_create(stream, "g", id="0", mkstream=True)
        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            pipe = client.pipeline(transaction=False)
            for _ in range(first, min(first + WINDOW, count)):
                pipe.xadd(stream, {"i": uuid.uuid4().hex, "b": BODY})
            await pipe.execute()
        published = rate(count, started)

        # Each round trip acks the previous batch (one XACK, all its IDs) and reads the next.
        seen = 0
        previous: list[bytes] = []
        started = time.perf_counter()
        while seen < count:
            pipe = client.pipeline(transaction=False)
            if previous:
                pipe.xack(stream, "g", *previous)
            pipe.xreadgroup("g", "c", {stream: ">"}, count=100, block=1000)
            replies = await pipe.execute()
            previous = [entry_id for entry_id, _fields in replies[-1][0][1]]
            seen += len(previous)
        await client.xack(stream, "g", *previous)
        drained = rate(count, started)
    return Row("raw redis-py Streams (baseline)", published, drained,
               "XADD x100 pipelined; XACK + XREADGROUP 100 pipelined")


# -- relevo: the driver, directly and behind a 16-worker pool ------------------------


async def relevo_driver(count: int) -> list[Row]:
    name = "driver"
    driver = RedisDriver(RedisSettings(url=URL, key_prefix=PREFIX))
    await driver.start()
    try:
        await driver.declare(QueueSpec(name, {}))
        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            size = min(WINDOW, count - first)
            await driver.publish(name, [Envelope(uuid.uuid4().hex, BODY) for _ in range(size)])
        batch_rate = rate(count, started)

        # The same volume again, one message per publish call, 100 publishers at once:
        # what `app.publish` from many handlers looks like (coalesced into pipelines).
        per_task = count // WINDOW

        async def publisher() -> None:
            for _ in range(per_task):
                await driver.publish(name, [Envelope(uuid.uuid4().hex, BODY)])

        started = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(WINDOW)))
        single_rate = rate(per_task * WINDOW, started)
        total = count + per_task * WINDOW

        pool_rate = await drain_driver(driver, name, total, CONCURRENCY, PREFETCH)
    finally:
        await driver.stop()
    return [
        Row("relevo driver, 100 per publish call", batch_rate, pool_rate,
            "drain: 16 workers over the prefetch buffer, XACK+XDEL"),
        Row("relevo driver, 1 per call x 100 tasks", single_rate, None,
            "publishes coalesced into pipelines"),
    ]


# -- relevo: the whole application path ----------------------------------------------

_APP_YAML = """\
version: "1.0"
namespace: bench
entries:
  - name: broker
    kind: queue.driver.redis
    url: "{url}"
    key_prefix: "{prefix}"
  - name: tasks
    kind: queue.queue
    driver: bench:broker
    queue_name: app
  - name: handler
    kind: function.python
    handler: "benchmarks.handlers:noop"
  - name: worker
    kind: queue.consumer
    queue: bench:tasks
    func: bench:handler
    concurrency: {concurrency}
    prefetch: {prefetch}
"""

async def relevo_app(count: int) -> Row:
    import relevo

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(_APP_YAML.format(url=URL, prefix=PREFIX + "app:",
                                         concurrency=CONCURRENCY, prefetch=PREFETCH))
        app = relevo.load(path)
        async with app:
            per_task = count // WINDOW
            payload = {"id": "task-123", "action": "process", "n": 1}

            async def publisher() -> None:
                for _ in range(per_task):
                    await app.publish("bench:tasks", payload)

            started = time.perf_counter()
            await asyncio.gather(*(publisher() for _ in range(WINDOW)))
            published = rate(per_task * WINDOW, started)
            target = per_task * WINDOW
            drained = await drain_app(app, "bench:worker", target)
    return Row("relevo app (YAML, app.publish, handler)", published, drained,
               "publish: 1 per call x 100 tasks")


# -- peers, each only when importable ------------------------------------------------


def dramatiq_peer(count: int) -> Row:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL, namespace=f"{PREFIX}dramatiq")  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    seen = 0
    done = threading.Event()
    lock = threading.Lock()

    @dramatiq.actor(queue_name="bench", max_retries=0)
    def task(n: int) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if seen >= count:
                done.set()

    started = time.perf_counter()
    for i in range(count):
        task.send(i)
    published = rate(count, started)
    worker = dramatiq.Worker(broker, worker_threads=CONCURRENCY, worker_timeout=100)
    worker.queue_prefetch = PREFETCH
    started = time.perf_counter()
    worker.start()
    done.wait(120)
    drained = rate(seen, started)
    worker.stop()
    broker.close()
    return Row("dramatiq RedisBroker", published, drained, "publish: 1 send at a time")


async def faststream_peer(count: int) -> Row:
    from faststream.redis import RedisBroker, StreamSub

    stream = f"{PREFIX}faststream"
    broker = RedisBroker(URL, logger=None)  # type: ignore[arg-type]
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c", batch=False,
                                        last_id="0", max_records=PREFETCH))
    async def handle(body: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    await broker.connect()
    started = time.perf_counter()
    for first in range(0, count, WINDOW):
        await asyncio.gather(
            *(broker.publish(BODY, stream=stream) for _ in range(first, min(first + WINDOW,
                                                                            count)))
        )
    published = rate(count, started)
    started = time.perf_counter()
    await broker.start()
    await asyncio.wait_for(done.wait(), 120)
    drained = rate(count, started)
    await broker.stop()
    return Row("faststream RedisBroker (stream)", published, drained,
               "publish: 100 in flight")


async def arq_peer(count: int) -> Row:
    from arq import create_pool  # type: ignore[import-not-found, unused-ignore]
    from arq.connections import (  # type: ignore[import-not-found, unused-ignore]
        RedisSettings as ArqSettings,
    )
    from arq.worker import Worker, func  # type: ignore[import-not-found, unused-ignore]

    seen = 0
    done = asyncio.Event()

    async def job(ctx: dict[str, Any], n: int) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    settings = ArqSettings.from_dsn(URL)
    queue = f"{PREFIX}arq"
    pool = await create_pool(settings, default_queue_name=queue)
    started = time.perf_counter()
    for first in range(0, count, WINDOW):
        await asyncio.gather(*(pool.enqueue_job("job", i, _queue_name=queue)
                               for i in range(first, min(first + WINDOW, count))))
    published = rate(count, started)
    worker = Worker(functions=[func(job, name="job")], redis_pool=pool, queue_name=queue,
                    max_jobs=CONCURRENCY, keep_result=0, poll_delay=0.01, handle_signals=False)
    started = time.perf_counter()
    runner = asyncio.create_task(worker.async_run())
    await asyncio.wait_for(done.wait(), 120)
    drained = rate(count, started)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await runner
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await worker.close()
    return Row("arq", published, drained, "publish: 100 enqueue_job in flight")


async def taskiq_peer(count: int) -> Row:
    from taskiq.api import run_receiver_task
    from taskiq_redis import RedisStreamBroker

    logging.getLogger("taskiq").setLevel(logging.CRITICAL)  # its cancel-time tracebacks
    broker = RedisStreamBroker(URL, queue_name=f"{PREFIX}taskiq", consumer_group_name="g",
                               consumer_id="0", xread_count=PREFETCH)
    seen = 0
    done = asyncio.Event()

    @broker.task
    async def job(n: int) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    await broker.startup()
    started = time.perf_counter()
    for first in range(0, count, WINDOW):
        await asyncio.gather(*(job.kiq(i) for i in range(first, min(first + WINDOW, count))))
    published = rate(count, started)
    started = time.perf_counter()
    receiver = asyncio.create_task(
        run_receiver_task(broker, max_async_tasks=CONCURRENCY, max_prefetch=PREFETCH)
    )
    await asyncio.wait_for(done.wait(), 120)
    drained = rate(count, started)
    receiver.cancel()
    with contextlib.suppress(BaseException):  # taskiq's shutdown can hang: bound it
        await asyncio.wait_for(broker.shutdown(), 5)
    return Row("taskiq-redis RedisStreamBroker", published, drained,
               "publish: 100 kiq in flight")


# -- the table -----------------------------------------------------------------------




async def main(count: int, skip_peers: bool, wanted: set[str]) -> None:
    print(textwrap.dedent(f"""\
        Redis Streams benchmark: {count:,} messages of {len(BODY)} bytes; one consumer,
        concurrency {CONCURRENCY}, prefetch {PREFETCH}. Python {sys.version.split()[0]},
        redis-py {redis.__version__}, Redis at {URL}
        """))
    rows: list[Row] = []
    try:
        baseline = await raw_streams(count)
        rows = [baseline, *await relevo_driver(count)]
        print("  measured the raw loop and the driver", flush=True)
        try:
            rows.append(await relevo_app(count))
            print("  measured the app path", flush=True)
        except ImportError as exc:
            print(f"(app path unavailable: {exc})")
        if not skip_peers:
            peers: list[tuple[str, Callable[[], Awaitable[Row]]]] = [
                ("arq", lambda: arq_peer(count)),
                ("dramatiq", lambda: asyncio.to_thread(dramatiq_peer, count)),
                ("taskiq-redis", lambda: taskiq_peer(count)),
                ("faststream", lambda: faststream_peer(count)),
            ]
            for label, run in peers:
                if label not in wanted:
                    continue
                try:
                    rows.append(await asyncio.wait_for(run(), PEER_TIMEOUT_S))
                    print(f"  measured {rows[-1].name}", flush=True)
                except ImportError:
                    print(f"({label} is not installed: skipped)")
                except Exception as exc:  # a peer's failure must not hide relevo's numbers
                    print(f"({label} failed: {exc!r})")
        print(table(rows, baseline))
    finally:
        with contextlib.suppress(Exception):  # Redis may be restarting (other test runs)
            await delete_keys(f"{PREFIX}*")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--peers", default="arq,dramatiq,taskiq-redis,faststream",
                        help="comma-separated peers to measure")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.skip_peers, set(args.peers.split(","))))
