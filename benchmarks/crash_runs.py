"""Broker crashes under load: lost and duplicated messages per run, against the bound.

    .venv/bin/python -m benchmarks.crash_runs [--runs 1] [--broker redis|amqp|both]
                                             [--messages 20000] [--rate 1000]

Each run publishes `--messages` at `--rate` per second to two `relevo run` workers
(concurrency 8, prefetch 50) and, meanwhile:
- redis: a redis-server of the run's own (free port, AOF, appendfsync always) is killed
  with SIGKILL and started again from its AOF twice, 3 s apart, down 1 s each time
  (`claim_idle: 2s`, `reconnect_delay: 500ms`);
- amqp: the local RabbitMQ's app is stopped and started once (`rabbitmqctl stop_app`,
  1 s, `start_app`). This drops every AMQP connection on the broker, other users' too.

Prints one line per run: lost (must be 0), duplicates (handlings beyond the first; of
them, copies a publish retry stored twice, each handled with attempts 1), the bound
prefetch x consumers x crashes, and the entries the workers logged as reclaimed.
Not part of `make bench`: it restarts a broker and takes about 30 s per run and broker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import uuid
from pathlib import Path

from tests.crashes import (
    Outcome,
    PrivateRedis,
    Rig,
    amqp_driver_entry,
    amqp_publisher,
    delete_amqp_queue,
    measure,
    rabbitmq_restart_turn,
    rabbitmqctl_available,
    redis_driver_entry,
    redis_publisher,
    restart_rabbitmq,
)

FIRST_CRASH_S = 5.0
BETWEEN_CRASHES_S = 3.0
DOWN_S = 1.0


async def redis_run(folder: Path, messages: int, rate: float) -> Outcome:
    redis = PrivateRedis(folder / "redis")
    redis.start()
    prefix = f"crash-{uuid.uuid4().hex[:8]}:"
    publisher = redis_publisher(redis.url, prefix)
    try:
        await publisher.start()
        rig = Rig(folder / "app", redis_driver_entry(redis.url, prefix), "tasks")
        return await measure(
            rig, publisher, messages=messages, rate=rate, timeout_s=300,
            crashes=[(FIRST_CRASH_S, lambda: redis.crash(DOWN_S)),
                     (FIRST_CRASH_S + BETWEEN_CRASHES_S, lambda: redis.crash(DOWN_S))],
        )
    finally:
        await publisher.stop()
        redis.kill()


async def amqp_run(folder: Path, messages: int, rate: float) -> Outcome:
    publisher = amqp_publisher()
    queue = f"relevo-crash-{uuid.uuid4().hex[:8]}"
    async with rabbitmq_restart_turn():  # no test suite restarts it during this run
        await publisher.start()
        try:
            rig = Rig(folder / "app", amqp_driver_entry(), queue)
            return await measure(
                rig, publisher, messages=messages, rate=rate, timeout_s=300,
                crashes=[(FIRST_CRASH_S, lambda: restart_rabbitmq(DOWN_S))],
            )
        finally:
            await delete_amqp_queue(queue)
            await publisher.stop()


def reclaimed(outcome: Outcome) -> int:
    """Entries the workers' keepers reported reclaiming (Redis)."""
    total = 0
    for log in outcome.logs:
        for line in log.read_text().splitlines():
            if "reclaimed" in line:
                total += int(line.split("reclaimed ")[1].split()[0])
    return total


async def main(runs: int, brokers: list[str], messages: int, rate: float) -> int:
    print(f"{runs} run(s), {messages} messages at {rate:.0f}/s, 2 workers x concurrency 8, "
          f"prefetch 50; redis: 2 kill -9 + restart from AOF, {BETWEEN_CRASHES_S:.0f} s "
          f"apart, down {DOWN_S:.0f} s; amqp: 1 stop_app/start_app, down {DOWN_S:.0f} s")
    failed = False
    for broker in brokers:
        for n in range(1, runs + 1):
            with tempfile.TemporaryDirectory(prefix=f"relevo-crash-{broker}-") as tmp:
                run = redis_run if broker == "redis" else amqp_run
                outcome = await run(Path(tmp), messages, rate)
                extra = f", reclaimed {reclaimed(outcome)}" if broker == "redis" else ""
                ok = outcome.lost == 0 and outcome.duplicates <= outcome.bound
                failed |= not ok
                print(f"{broker} run {n}: lost {outcome.lost}, duplicates "
                      f"{outcome.duplicates} (stored twice by a publish retry "
                      f"{outcome.stored_twice}), bound {outcome.bound}{extra}"
                      f"{'' if ok else '  <-- FAILS'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the publisher's retry lines are expected
    brokers = ["redis", "amqp"] if args.broker == "both" else [args.broker]
    if "amqp" in brokers and not rabbitmqctl_available():
        sys.exit("amqp runs need rabbitmqctl allowed to stop and start the local broker")
    sys.exit(asyncio.run(main(args.runs, brokers, args.messages, args.rate)))
