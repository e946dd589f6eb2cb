"""`relevo run --processes N` with a metrics entry: one endpoint, served by the parent,
whose counters are the sum over every child, recycled ones included."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_service
from tests.integration.processes import Relevo, fresh_prefix, redis_app, seen_ids
from tests.integration.test_processes import publish
from tests.waiting import wait_until, wait_until_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    async for value in fresh_prefix():
        yield value


@pytest.fixture
def runs() -> Iterator[list[Relevo]]:
    started: list[Relevo] = []
    yield started
    for run in started:
        run.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


async def test_the_parent_serves_the_sum_of_its_children_recycled_ones_included(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    port = free_port()
    path = redis_app(tmp_path, prefix, delay_s=0.001)
    with path.open("a") as config:
        config.write(f"  - name: metrics\n    kind: metrics.prometheus\n"
                     f"    listen: 127.0.0.1:{port}\n    lifecycle: {{auto_start: true}}\n")
    run = Relevo(str(path), "--processes", "2", "--max-messages-per-process", "120",
                 "--log-format", "json", "--status-interval", "300ms")
    runs.append(run)
    await wait_until(lambda: len(run.ready_pids()) == 2, 20, "2 children ready")
    ids = await publish(path, 300)
    seen = tmp_path / "seen.txt"
    await wait_until(lambda: {i for _, i in seen_ids(seen)} >= set(ids), 30, "all handled")
    await wait_until(lambda: run.count("recycled") >= 1, 15, "a child recycled")
    acked = ("relevo_messages_processed_total",
             (("consumer", "app:worker"), ("outcome", "ack"), ("queue", "app:tasks")))

    async def counted_all() -> bool:
        return (await asyncio.to_thread(scrape, port)).get(acked) == 300

    await wait_until_async(counted_all, 15, "the parent's endpoint to count 300 acks")
    up = ("relevo_entry_up", (("entry", "app:worker"),))

    async def two_children_up() -> bool:  # a recycling briefly has one more, or one less
        return (await asyncio.to_thread(scrape, port)).get(up) == 2

    await wait_until_async(two_children_up, 15, "the worker up in 2 children")
    samples = await asyncio.to_thread(scrape, port)
    assert samples[("relevo_message_processing_seconds_count",
                    (("consumer", "app:worker"), ("queue", "app:tasks")))] == 300
    assert samples[("relevo_queue_messages", (("queue", "app:tasks"), ("state", "ready")))] == 0
    run.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(run.wait_exit, 20) == 0, run.output
    records = [json.loads(line) for line in run.lines if line.strip()]  # all JSON
    assert any("metrics of every child" in r["message"] for r in records)
    status = [r for r in records if r["logger"] == "relevo.process" and
              r["message"].startswith("status: ")]
    assert status, run.output
    assert any("processed/s across 2 children (1: " in r["message"] for r in status)
