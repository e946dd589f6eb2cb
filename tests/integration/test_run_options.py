"""`relevo run` options for processes and reload, as a user types them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.appfiles import write_app
from tests.conftest import require_service
from tests.integration.processes import Relevo, fresh_prefix, redis_app
from tests.integration.test_cli import APP, relevo
from tests.waiting import wait_until

HANDLER = "async def main(body):\n    return body\n"


@pytest.fixture
def runs() -> Iterator[list[Relevo]]:
    started: list[Relevo] = []
    yield started
    for run in started:
        run.stop()


@pytest.mark.parametrize(("option", "value", "complaint"), [
    ("--processes", "0", "0 is not in the range x>=1"),
    ("--max-memory-per-process", "-5MB", "not a size: '-5MB'"),
    ("--max-memory-per-process", "lots", "not a size: 'lots'"),
    ("--max-messages-per-process", "0", "0 is not in the range x>=1"),
])
def test_bad_process_options_are_usage_errors(
    tmp_path: Path, option: str, value: str, complaint: str
) -> None:
    path = write_app(tmp_path, APP, handler__py=HANDLER)
    result = relevo("run", str(path), option, value)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '{option}'" in result.stderr
    assert complaint in result.stderr


def test_consumers_of_a_memory_queue_cannot_run_in_several_processes(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py=HANDLER)
    result = relevo("run", str(path), "--processes", "2")
    assert result.returncode == 1
    assert "app:worker: queue: reads app:tasks, a queue on the memory driver app:mem, " \
           "which cannot be shared between processes" in result.stderr


@pytest.mark.slow
async def test_run_reload_applies_a_changed_handler_and_refuses_a_broken_config(
    tmp_path: Path, runs: list[Relevo]
) -> None:
    path = write_app(tmp_path, APP, handler__py=HANDLER)
    run = Relevo(str(path), "--reload")
    runs.append(run)
    await wait_until(lambda: run.count("watching 2 files") == 1, 15, "the watcher")
    (tmp_path / "handler.py").write_text("async def main(body):\n    return None\n")
    await wait_until(lambda: run.count("reloaded:") == 1, 10, "a reload")
    assert "restarted ['app:fn', 'app:worker']" in run.output
    path.write_text(path.read_text().replace("queue: tasks", "queue: tasks\n    prefetch: 0"))
    await wait_until(lambda: run.count("reload refused") == 1, 10, "a refused reload")
    assert "app:worker: prefetch: must be between 1 and 10000" in run.output
    run.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(run.wait_exit, 20) == 0, run.output


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    async for value in fresh_prefix():
        yield value


@pytest.mark.slow
@pytest.mark.broker
async def test_with_several_processes_every_child_reloads(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    path = redis_app(tmp_path, prefix)
    run = Relevo(str(path), "--processes", "2", "--reload")
    runs.append(run)
    await wait_until(lambda: len(run.ready_pids()) == 2, 15, "2 children ready")
    await wait_until(lambda: run.count("watching 2 files") == 1, 15, "the watcher")
    path.write_text(path.read_text().replace("concurrency: 4", "concurrency: 2"))
    await wait_until(lambda: run.count("reloaded: added [], removed [], restarted "
                                       "['app:fn', 'app:worker']") == 2, 15, "2 reloads")
    run.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(run.wait_exit, 20) == 0, run.output
