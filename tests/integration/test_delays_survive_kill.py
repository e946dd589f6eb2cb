"""kill -9 of a worker process while delayed messages and retries wait in Redis:
none is lost, none is handled before its time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import relevo
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.waiting import wait_until, wait_until_async

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
RETRY_S = 1.5
N = 30  # published at once, each failing its first attempt; as many again delayed

HANDLER = """\
import json, time
import relevo

def main(body):
    message = relevo.message()
    with open({log!r}, "a") as log:
        log.write(json.dumps({{"id": message.id, "attempt": message.attempts,
                              "at": time.time(), "n": body["n"]}}) + "\\n")
    if body.get("fail_first") and message.attempts == 1:
        raise ValueError("the first attempt fails")
"""


def app_yaml(folder: Path, prefix: str, log: Path) -> Path:
    return write_app(folder, f"""\
- name: redis
  kind: queue.driver.redis
  url: {REDIS_URL}
  key_prefix: '{prefix}'
  claim_idle: 1s
  block: 100ms
  lifecycle: {{auto_start: true}}
- name: tasks
  kind: queue.queue
  driver: redis
  retry: {{initial_delay: {RETRY_S}s, jitter: 0}}
- name: fn
  kind: function.python
  source: file://handler.py
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: 4
  lifecycle: {{auto_start: true}}
""", handler__py=HANDLER.format(log=str(log)))


async def delayed_count(app: relevo.App, count: int) -> bool:
    return (await app.info("app:tasks"))["delayed"] == count


def handled(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def worker(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "relevo", "run", str(path)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    async with Redis.from_url(REDIS_URL) as client:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)


async def test_kill_9_with_delays_and_retries_waiting_loses_none_and_none_is_early(
    tmp_path: Path, prefix: str
) -> None:
    log = tmp_path / "handled.jsonl"
    path = app_yaml(tmp_path, prefix, log)
    app = relevo.load(path)
    await app.open(start=False)  # publish-only: this process runs no consumer
    try:
        due = time.time() + 3.0
        delayed = await app.publish_batch("app:tasks", [{"n": n} for n in range(N)], delay=3.0)
        failing = await app.publish_batch(
            "app:tasks", [{"n": N + n, "fail_first": True} for n in range(N)]
        )
        first = worker(path)
        try:  # every failing message failed once: N retries and N publishes wait in Redis
            await wait_until_async(lambda: delayed_count(app, 2 * N), 20, "2N delayed")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        killed_at = time.time()
        second = worker(path)
        try:
            def done() -> set[str]:
                return {r["id"] for r in handled(log)
                        if r["n"] < N or r["attempt"] >= 2}

            await wait_until(lambda: done() >= set(delayed) | set(failing), 30, "all done")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert (await app.info("app:tasks"))["message_count"] == 0
    finally:
        await app.close()
    records = handled(log)
    for record in records:
        if record["n"] < N:  # delayed publish: never before its due time
            assert record["at"] >= due - 0.002, record
    failed_at = {r["id"]: r["at"] for r in records if r["n"] >= N and r["attempt"] == 1}
    for record in records:
        if record["n"] >= N and record["attempt"] >= 2:  # the retry waited its backoff
            assert record["at"] >= failed_at[record["id"]] + RETRY_S - 0.002, record
    assert killed_at < min(due, min(failed_at.values()) + RETRY_S), "killed too late"
