"""`relevo run --processes N`: real parent and children, real signals, real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import relevo
from tests.conftest import require_service
from tests.integration.processes import (
    Relevo,
    alive,
    first_handled_at,
    fresh_prefix,
    redis_app,
    seen_ids,
)
from tests.waiting import wait_until

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


def start(runs: list[Relevo], *args: str) -> Relevo:
    run = Relevo(*args)
    runs.append(run)
    return run


async def publish(path: Path, count: int, pause_s: float = 0.0) -> list[str]:
    ids: list[str] = []
    app = relevo.load(path)
    await app.open(start=False)
    try:
        for n in range(count):
            ids.append(await app.publish("app:tasks", {"n": n}))
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        await app.close()
    return ids


async def test_a_child_killed_under_load_is_replaced_within_2s_and_no_message_is_lost(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    path = redis_app(tmp_path, prefix, delay_s=0.002)
    run = start(runs, str(path), "--processes", "2")
    await wait_until(lambda: len(run.ready_pids()) == 2, 15, "2 children ready")
    publishing = asyncio.create_task(publish(path, 1500, pause_s=0.002))
    seen = tmp_path / "seen.txt"
    await wait_until(lambda: len(seen_ids(seen)) > 100, 15, "messages flowing")
    victim = run.ready_pids()[1]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: run.ready_pids()[1] != victim, 5, "a replacement child")
    replacement = run.ready_pids()[1]
    await wait_until(lambda: first_handled_at(seen, replacement) is not None, 5,
                     "the replacement handling messages")
    # timed by the replacement's own record of its first message, not by when this busy
    # test process got round to reading it
    first = first_handled_at(seen, replacement)
    assert first is not None
    took_s = first - killed_at
    assert took_s < 2.0, f"{took_s:.2f}s\n{run.output}"
    assert "killed by SIGKILL; restart 1 in" in run.output
    ids = await publishing
    await wait_until(lambda: {i for _, i in seen_ids(seen)} >= set(ids), 20,
                     "every published ID handled")
    run.process.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0, run.output


async def handlers_running_in_two_children(
    tmp_path: Path, prefix: str, runs: list[Relevo], *, stop_timeout: str
) -> Relevo:
    """`relevo run --processes 2` with 30 s handlers running in both children."""
    # each child takes at most the 4 it can run: the 8 messages reach both
    path = redis_app(tmp_path, prefix, delay_s=30.0, prefetch=4, stop_timeout=stop_timeout)
    run = start(runs, str(path), "--processes", "2")
    await wait_until(lambda: len(run.ready_pids()) == 2, 15, "2 children ready")
    await publish(path, 8)
    started = tmp_path / "seen.txt.started"
    await wait_until(lambda: len({pid for pid, _ in seen_ids(started)}) == 2, 10,
                     "handlers running in both children")
    return run


async def test_sigterm_with_handlers_running_exits_within_stop_timeout_plus_1s(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    run = await handlers_running_in_two_children(tmp_path, prefix, runs, stop_timeout="1s")
    run.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(run.wait_exit, 10)
    assert code == 1, run.output  # a stop timed out: their messages go back to Redis
    # From the parent taking the signal to the last child's exit, by the parent's log
    # clock: neither this test process's scheduling nor interpreter teardown counts.
    took_s = (run.logged_at("every child has stopped")
              - run.logged_at("SIGTERM: stopping 2 children gracefully"))
    assert took_s < 1.0 + 1.0, f"{took_s:.2f}s\n{run.output}"
    assert "stop_timeout" in run.output
    assert not any(alive(pid) for pid in run.all_ready_pids())


async def test_children_stop_on_their_own_when_the_parent_is_killed(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    path = redis_app(tmp_path, prefix)
    run = start(runs, str(path), "--processes", "2")
    await wait_until(lambda: len(run.ready_pids()) == 2, 15, "2 children ready")
    children = list(run.ready_pids().values())
    run.process.kill()
    await wait_until(lambda: not any(alive(pid) for pid in children), 10,
                     "no orphan child left")
    assert run.count("parent gone; stopping gracefully") == 2, run.output


async def test_a_child_that_cannot_start_is_retried_with_its_error_then_the_parent_gives_up(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    path = redis_app(tmp_path, prefix, handler="raise ImportError('no module named nope')\n",
                     restart="{initial_delay: 100ms, max_attempts: 2}")
    run = start(runs, str(path), "--processes", "2")
    code = await asyncio.to_thread(run.wait_exit, 30)
    assert code == 1, run.output
    assert run.count("giving up after 2 restarts") == 1, run.output
    assert run.count("restart 1 in") >= 1, run.output
    # the child's error is logged once per failed start, by the parent
    failures = run.count("no module named nope")
    assert failures == run.count("; restart ") + 1, run.output


async def test_recycling_replaces_a_child_past_its_message_limit_and_loses_nothing(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    path = redis_app(tmp_path, prefix, delay_s=0.001)
    run = start(runs, str(path), "--processes", "1", "--max-messages-per-process", "100")
    await wait_until(lambda: len(run.ready_pids()) == 1, 15, "1 child ready")
    ids = await publish(path, 400, pause_s=0.001)
    seen = tmp_path / "seen.txt"
    await wait_until(lambda: {i for _, i in seen_ids(seen)} >= set(ids), 30,
                     "every published ID handled")
    await wait_until(lambda: run.count("recycled") >= 1, 10, "a child recycled")
    assert len({pid for pid, _ in seen_ids(seen)}) >= 2, "the replacement took over"
    assert "recycling after" in run.output
    # the replacement was ready before the old child was told to stop
    first, second = run.all_ready_pids()[:2]
    lines = run.output.splitlines()
    ready = next(i for i, line in enumerate(lines) if f"(pid {second}) ready" in line)
    handover = next(i for i, line in enumerate(lines) if "takes over from" in line)
    recycled = next(i for i, line in enumerate(lines) if f"(pid {first}) recycled" in line)
    assert ready < handover < recycled, run.output
    run.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(run.wait_exit, 20) == 0, run.output


async def test_a_second_signal_kills_the_children_and_exits_128_plus_its_number(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    run = await handlers_running_in_two_children(tmp_path, prefix, runs, stop_timeout="20s")
    run.process.send_signal(signal.SIGTERM)
    await wait_until(lambda: run.count("stopping 2 children gracefully") == 1, 5, "a stop")
    run.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(run.wait_exit, 5) == 128 + signal.SIGINT, run.output
    children = run.all_ready_pids()
    await wait_until(lambda: not any(alive(pid) for pid in children), 5, "children killed")


HOARDING_HANDLER = """\
import os
import relevo

SEEN = {seen!r}
HOARD = []

async def main(body):
    HOARD.append(bytearray(4 * 1024 * 1024))  # touched: it counts as resident
    HOARD[-1][::4096] = b"x" * (len(HOARD[-1]) // 4096)
    with open(SEEN, "a") as seen:
        seen.write(f"{{os.getpid()}} {{relevo.message().id}}\\n")
"""


async def test_recycling_replaces_a_child_past_its_memory_limit_and_loses_nothing(
    tmp_path: Path, prefix: str, runs: list[Relevo]
) -> None:
    seen = tmp_path / "seen.txt"
    path = redis_app(tmp_path, prefix, handler=HOARDING_HANDLER.format(seen=str(seen)))
    run = start(runs, str(path), "--processes", "1", "--max-memory-per-process", "200MB")
    await wait_until(lambda: len(run.ready_pids()) == 1, 15, "1 child ready")
    ids = await publish(path, 120, pause_s=0.005)
    await wait_until(lambda: {i for _, i in seen_ids(seen)} >= set(ids), 30,
                     "every published ID handled")
    await wait_until(lambda: run.count("recycled") >= 1, 10, "a child recycled")
    assert "MiB resident (limit 200 MiB)" in run.output
    assert len({pid for pid, _ in seen_ids(seen)}) >= 2, "the replacement took over"
    run.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(run.wait_exit, 20) == 0, run.output
