"""`relevo peek`, `relevo requeue` and `relevo purge` as a user runs them, on Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import relevo
from relevo.message import Envelope
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.integration.test_cli import relevo as run_relevo

pytestmark = pytest.mark.broker


@pytest.fixture
def app_path(tmp_path: Path) -> Iterator[Path]:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    yield write_app(tmp_path, f"""\
- name: broker
  kind: queue.driver.redis
  url: redis://127.0.0.1:6379/0
  key_prefix: '{prefix}'
- name: tasks
  kind: queue.queue
  driver: broker
- name: dead
  kind: queue.queue
  driver: broker
""")
    client = redis.Redis()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def _dead_letters(path: Path, count: int) -> None:
    app = relevo.load(path)
    await app.open(start=False)
    try:
        await app.peek("app:dead")  # declares the queues
        await app.peek("app:tasks")
        await app.queues["app:dead"].forward([
            Envelope(f"d-{n}", json.dumps({"n": n}).encode(),
                     {"x_original_queue": "app:tasks", "x_dead_letter_reason": "boom"}, 2)
            for n in range(count)
        ])
    finally:
        await app.close()


def test_peek_prints_json_lines_and_requeue_moves_the_named_message(app_path: Path) -> None:
    asyncio.run(_dead_letters(app_path, 3))
    peeked = run_relevo("peek", str(app_path), "app:dead", "--limit", "2")
    assert peeked.returncode == 0, peeked.stderr
    lines = [json.loads(line) for line in peeked.stdout.splitlines()]
    assert [(m["id"], m["body"], m["attempts"]) for m in lines] == [
        ("d-0", {"n": 0}, 3), ("d-1", {"n": 1}, 3)
    ]
    assert lines[0]["headers"] == {"x_original_queue": "app:tasks", "x_dead_letter_reason": "boom"}

    moved = run_relevo("requeue", str(app_path), "app:dead", "--id", "d-1")
    assert (moved.returncode, moved.stdout) == (0, "requeued 1\n"), moved.stderr
    home = run_relevo("peek", str(app_path), "app:tasks")
    assert [json.loads(line)["id"] for line in home.stdout.splitlines()] == ["d-1"]

    assert run_relevo("requeue", str(app_path), "app:dead").stdout == "requeued 2\n"


def test_purge_asks_for_yes_and_then_says_how_many_it_removed(app_path: Path) -> None:
    asyncio.run(_dead_letters(app_path, 4))
    refused = run_relevo("purge", str(app_path), "app:dead")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    done = run_relevo("purge", str(app_path), "app:dead", "--yes")
    assert (done.returncode, done.stdout) == (0, "purged 4\n"), done.stderr
    assert run_relevo("peek", str(app_path), "app:dead").stdout == ""


def test_requeue_of_an_unknown_message_says_so_and_exits_1(app_path: Path) -> None:
    asyncio.run(_dead_letters(app_path, 1))
    result = run_relevo("requeue", str(app_path), "app:dead", "--id", "nope")
    assert result.returncode == 1
    assert "kept nope: not among the ready dead letters" in result.stderr
