"""Live reload: `await app.reload()` starts, stops and restarts only what changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import relevo
from relevo.consumer.consumer import Consumer
from relevo.errors import ConfigError
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.integration.processes import fresh_prefix
from tests.waiting import wait_until

HANDLER = """\
import relevo
SEEN = {seen!r}
async def main(body):
    with open(SEEN, "a") as seen:
        seen.write("{tag} " + relevo.message().id + "\\n")
"""


def entries(driver: str, a_concurrency: int = 2, extra: str = "") -> str:
    return driver + f"""\
- name: tasks
  kind: queue.queue
  driver: broker
- name: other
  kind: queue.queue
  driver: broker
- name: fn
  kind: function.python
  source: file://handler.py
- name: steady
  kind: queue.consumer
  queue: other
  func: fn_other
  concurrency: 2
  lifecycle: {{auto_start: true}}
- name: fn_other
  kind: function.python
  source: file://other.py
- name: a
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: {a_concurrency}
  lifecycle: {{auto_start: true}}
{extra}"""


MEMORY = "- name: broker\n  kind: queue.driver.memory\n  lifecycle: {auto_start: true}\n"


def write(folder: Path, driver: str = MEMORY, tag: str = "v1", **kwargs: Any) -> Path:
    seen = str(folder / "seen.txt")
    return write_app(folder, entries(driver, **kwargs),
                     handler__py=HANDLER.format(seen=seen, tag=tag),
                     other__py=HANDLER.format(seen=seen, tag="other"))


def handled(seen: Path) -> set[str]:
    """IDs the handlers recorded (each line: a tag, then the message ID)."""
    return {line.split()[1] for line in seen.read_text().splitlines()} if seen.exists() else set()


def workers(app: relevo.App, consumer_id: str) -> list[asyncio.Task[None]]:
    """The consumer's worker tasks: the objects that prove it was left untouched."""
    assert app._supervisor is not None
    service = app._supervisor.services[consumer_id].service
    assert isinstance(service, Consumer)
    return service.workers


async def test_a_changed_consumer_restarts_and_unchanged_ones_keep_their_worker_tasks(
    tmp_path: Path,
) -> None:
    path = write(tmp_path)
    async with relevo.load(path) as app:
        steady_before, a_before = workers(app, "app:steady"), workers(app, "app:a")
        write(tmp_path, a_concurrency=3)
        result = await app.reload()
        # fn's thread pool is sized by its consumers' concurrency: it restarts with app:a
        assert result == {"added": [], "removed": [], "restarted": ["app:a", "app:fn"]}
        assert workers(app, "app:steady") == steady_before
        assert all(t1 is t2 for t1, t2 in zip(workers(app, "app:steady"), steady_before,
                                              strict=True))
        assert len(workers(app, "app:a")) == 3
        assert not set(workers(app, "app:a")) & set(a_before)
        await app.publish("app:tasks", {"n": 1})
        await wait_until(lambda: len(handled(tmp_path / "seen.txt")) == 1)


async def test_added_entries_start_and_removed_ones_stop(tmp_path: Path) -> None:
    path = write(tmp_path)
    async with relevo.load(path) as app:
        steady_before = workers(app, "app:steady")
        write(tmp_path, extra="""\
- name: b
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {auto_start: true}
""")
        result = await app.reload()
        # fn gets more workers for its new consumer: it and its consumers restart
        assert result == {"added": ["app:b"], "removed": [], "restarted": ["app:a", "app:fn"]}
        assert app.status("app:b") == "running"
        write(tmp_path)
        result = await app.reload()
        assert result["removed"] == ["app:b"]
        assert workers(app, "app:steady") == steady_before
        with pytest.raises(relevo.errors.RelevoError, match="no entry"):
            app.status("app:b")


async def test_a_changed_handler_file_restarts_its_function_and_consumers_only(
    tmp_path: Path,
) -> None:
    path = write(tmp_path)
    seen = tmp_path / "seen.txt"
    async with relevo.load(path) as app:
        steady_before = workers(app, "app:steady")
        write(tmp_path, tag="v2")
        result = await app.reload()
        assert result == {"added": [], "removed": [], "restarted": ["app:a", "app:fn"]}
        assert workers(app, "app:steady") == steady_before
        message_id = await app.publish("app:tasks", {"n": 1})
        await wait_until(lambda: seen.exists() and f"v2 {message_id}" in seen.read_text())


async def test_an_invalid_config_changes_nothing_and_raises_as_validate_prints_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path)
    async with relevo.load(path) as app:
        before = {i: workers(app, i) for i in ("app:a", "app:steady")}
        path.write_text(path.read_text().replace("concurrency: 2", "concurrency: 0"))
        with pytest.raises(ConfigError, match="concurrency: must be between 1 and 1000"):
            await app.reload()
        (tmp_path / "handler.py").write_text("def broken(:\n")
        write_app(tmp_path, entries(MEMORY, a_concurrency=5))
        with pytest.raises(ConfigError, match="failed to import"):
            await app.reload()
        assert {i: workers(app, i) for i in before} == before
        assert app.status("app:a") == "running"


@pytest.fixture
async def redis_driver() -> AsyncIterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    async for prefix in fresh_prefix():
        yield (f"- name: broker\n  kind: queue.driver.redis\n  url: redis://127.0.0.1:6379/0\n"
               f"  key_prefix: '{prefix}'\n  block: 100ms\n  lifecycle: {{auto_start: true}}\n")


@pytest.mark.broker
@pytest.mark.slow
async def test_a_reload_under_continuous_publishing_loses_nothing(
    tmp_path: Path, redis_driver: str
) -> None:
    path = write(tmp_path, redis_driver)
    seen = tmp_path / "seen.txt"
    ids: list[str] = []
    async with relevo.load(path) as app:
        steady_before = workers(app, "app:steady")

        async def keep_publishing() -> None:
            for n in range(600):
                queue = "app:tasks" if n % 2 else "app:other"
                ids.append(await app.publish(queue, {"n": n}))
                await asyncio.sleep(0.001)

        publishing = asyncio.create_task(keep_publishing())
        for concurrency, tag in ((3, "v2"), (1, "v3"), (4, "v4")):
            published = len(ids)
            await wait_until(lambda n=published: len(ids) > n + 50, 10, "more publishing")
            write(tmp_path, redis_driver, tag=tag, a_concurrency=concurrency)
            result = await app.reload()
            assert result["restarted"] == ["app:a", "app:fn"]
        assert not publishing.done(), "the reloads happened while publishing went on"
        await publishing
        await wait_until(lambda: handled(seen) >= set(ids), 20, "every published ID handled")
        assert workers(app, "app:steady") == steady_before
