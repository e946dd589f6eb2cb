"""AMQP throughput: relevo's AMQP driver next to a raw aio-pika loop, and peers where installed.

    .venv/bin/python -m benchmarks.bench_amqp [--messages 20000] [--rounds 3] [--skip-peers]

One process, one consumer (concurrency 16, prefetch 200), small persistent messages,
published one per call by 100 concurrent publishers, each awaiting its confirm (so 100
confirms are in flight), for every contender alike. Every run measures the raw aio-pika baseline
in the same process, so the ratios compare like with like on this machine. Peers
(Dramatiq, FastStream) run only when importable, each on its own RabbitMQ broker
class. Celery is left out: its worker cannot be embedded in this process (it exits
the interpreter when started from a thread as root), and a separate worker process
would measure something else. Needs RabbitMQ at $RELEVO_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq

from benchmarks.broker_rows import Row, drain_app, drain_driver, rate, table
from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.base import QueueSpec
from relevo.message import Envelope

URL = os.environ.get("RELEVO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CONCURRENCY = 16
PREFETCH = 200
WINDOW = 100  # publisher confirms in flight
BODY = b'{"id": "task-123", "action": "process", "n": 1}'
BROKER = URL.split("@")[-1]



def queue_name(tag: str) -> str:
    return f"relevo-bench-{tag}-{uuid.uuid4().hex[:8]}"


async def delete_queues(*names: str) -> None:
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()



async def publish_rate(count: int, publish_one: Callable[[], Awaitable[object]]) -> float:
    """Messages per second with WINDOW publishers at once, each awaiting its confirm.

    A sliding window: as soon as one confirm arrives, that publisher sends its next
    message, so about WINDOW confirms are always in flight.
    """
    per_task = count // WINDOW

    async def publisher() -> None:
        for _ in range(per_task):
            await publish_one()

    started = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(WINDOW)))
    return rate(per_task * WINDOW, started)


# -- raw aio-pika: the baseline --------------------------------------------------------


async def raw_aio_pika(count: int) -> Row:
    name = queue_name("raw")
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, durable=True)
        exchange = channel.default_exchange
        published = await publish_rate(
            count,
            lambda: exchange.publish(
                aio_pika.Message(
                    BODY,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=uuid.uuid4().hex,
                ),
                routing_key=name,
            ),
        )

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=PREFETCH)
        queue = await consumer_channel.get_queue(name)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen >= count:
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message)
        await done.wait()
        drained = rate(count, started)
    finally:
        await connection.close()
        await delete_queues(name)
    return Row("raw aio-pika (baseline)", published, drained)


# -- relevo: the driver, directly and behind a 16-worker pool --------------------------


async def relevo_driver(count: int) -> Row:
    name = queue_name("relevo")
    driver = AmqpDriver(AmqpSettings(url=URL))
    await driver.start()
    try:
        await driver.declare(QueueSpec(name, {"durable": True}))
        published = await publish_rate(
            count, lambda: driver.publish(name, [Envelope(uuid.uuid4().hex, BODY)])
        )

        drained = await drain_driver(driver, name, count, CONCURRENCY, PREFETCH)
    finally:
        await driver.stop()
        await delete_queues(name)
    return Row("relevo driver", published, drained, "drain: 16 workers acking")


# -- relevo: the whole application path ------------------------------------------------

_APP_YAML = """\
version: "1.0"
namespace: bench
entries:
  - name: broker
    kind: queue.driver.amqp
    url: "{url}"
  - name: tasks
    kind: queue.queue
    driver: bench:broker
    queue_name: {queue}
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

    name = queue_name("app")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(_APP_YAML.format(url=URL, queue=name, concurrency=CONCURRENCY,
                                         prefetch=PREFETCH))
        app = relevo.load(path)
        try:
            async with app:
                payload = {"id": "task-123", "action": "process", "n": 1}
                published = await publish_rate(count, lambda: app.publish("bench:tasks", payload))
                target = count // WINDOW * WINDOW
                drained = await drain_app(app, "bench:worker", target)
        finally:
            await delete_queues(name)
    return Row("relevo app (YAML, app.publish, handler)", published, drained)


# -- peers, each only when importable --------------------------------------------------


def dramatiq_peer(count: int) -> Row:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=URL, confirm_delivery=True)
    dramatiq.set_broker(broker)
    name = queue_name("dramatiq")
    seen = 0
    done = threading.Event()
    lock = threading.Lock()

    @dramatiq.actor(queue_name=name, max_retries=0)
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
    drained = rate(count, started)
    worker.stop()
    broker.close()
    asyncio.run(delete_queues(name, f"{name}.DQ", f"{name}.XQ"))
    return Row("dramatiq RabbitmqBroker", published, drained,
               "publish: 1 confirmed send at a time")


async def faststream_peer(count: int) -> Row:
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    name = queue_name("faststream")
    broker = RabbitBroker(URL, logger=None)
    queue = RabbitQueue(name, durable=True)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(queue, channel=Channel(prefetch_count=PREFETCH))
    async def handle(body: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    await broker.connect()
    await broker.declare_queue(queue)
    published = await publish_rate(
        count, lambda: broker.publish(BODY, queue=name, persist=True)
    )
    started = time.perf_counter()
    await broker.start()
    await done.wait()
    drained = rate(count, started)
    await broker.stop()
    await delete_queues(name)
    return Row("faststream RabbitBroker", published, drained)


# -- the table ------------------------------------------------------------------------




async def main(count: int, rounds: int, skip_peers: bool) -> None:
    print(textwrap.dedent(f"""\
        AMQP benchmark: {count:,} messages of {len(BODY)} bytes, persistent, confirms
        ({WINDOW} in flight); one consumer, concurrency {CONCURRENCY}, prefetch {PREFETCH}.
        Python {sys.version.split()[0]}, aio-pika {aio_pika.__version__}, broker {BROKER};
        median of {rounds} interleaved rounds for raw aio-pika and relevo, one round for peers.
        """))
    measured: dict[str, list[Row]] = {}
    for _ in range(rounds):  # interleaved, so a noisy moment hurts every contender alike
        for run in (raw_aio_pika, relevo_driver, relevo_app):
            row = await run(count)
            measured.setdefault(row.name, []).append(row)
    rows = [median_row(samples) for samples in measured.values()]
    if not skip_peers:
        peers: list[tuple[str, Callable[[], Awaitable[Row]]]] = [
            ("dramatiq", lambda: asyncio.to_thread(dramatiq_peer, count)),
            ("faststream", lambda: faststream_peer(count)),
        ]
        for label, peer in peers:
            try:
                rows.append(await peer())
            except ImportError:
                print(f"({label} is not installed: skipped)")
    print(table(rows, rows[0]))


def median_row(samples: list[Row]) -> Row:
    def middle(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    first = samples[0]
    return Row(first.name, middle([r.publish for r in samples]),
               middle([r.drain for r in samples]), first.note)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds, args.skip_peers))
