"""Retries with backoff, handler control (Retry, Reject, nack with a delay) and delayed
publishing, on `in_memory` applications: time moves only when a test advances `app.clock`,
and `app.join()` waits until what is due has been handled."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import relevo
from relevo import clock
from relevo.errors import PublishError
from relevo.testing import in_memory
from tests.appfiles import write_app

HERE = "tests.integration.test_retries"


@dataclass
class Seen:
    calls: list[tuple[Any, int, float]] = field(default_factory=list)  # body, attempt, clock


seen = Seen()


async def steered(body: dict[str, Any]) -> Any:
    """Does what the message asks, on the attempts it names (`until`: fail before it)."""
    message = relevo.message()
    seen.calls.append((body, message.attempts, clock.now()))
    if message.attempts >= body.get("until", 1_000):
        return "done"
    action = body.get("do")
    if action == "retry":
        raise relevo.Retry(body["after"])
    if action == "reject":
        raise relevo.Reject("bad input")
    if action == "return_retry":  # what a Lua `return nil, err, delay` becomes
        return relevo.Retry(body["after"], "returned")
    if action == "nack":
        message.nack("later", delay=body["after"])
        return None
    if action == "fail":
        raise ValueError("down")
    return "done"


def sync_forward(body: dict[str, Any]) -> None:
    """A thread handler that passes the work on, to be done later."""
    if body.get("do") != "forward":
        return
    message = relevo.message()
    seen.calls.append((body, message.attempts, clock.now()))
    relevo.publish_sync("app:tasks", {"do": "ok"}, delay=body["after"])


def app_yaml(tmp_path: Path, queue: str = "", handler: str = "steered") -> Path:
    return write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
{queue}- name: dead
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  handler: "{HERE}:{handler}"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true}}
""")


@pytest.fixture(autouse=True)
def fresh_seen() -> None:
    global seen
    seen = Seen()


async def delayed(app: relevo.App) -> int:
    return (await app.info("app:tasks"))["delayed"]


async def test_failed_deliveries_wait_longer_each_time_up_to_max_delay_then_dead_letter(
    tmp_path: Path,
) -> None:
    queue = ("  retry: {initial_delay: 10s, factor: 2, max_delay: 15s, jitter: 0}\n"
             "  dead_letter: {queue: dead, max_attempts: 4}\n")
    async with in_memory(app_yaml(tmp_path, queue)) as app:
        await app.publish("app:tasks", {"do": "fail"})
        await app.join()
        info = await app.info("app:tasks")
        assert (len(seen.calls), info["message_count"], info["delayed"]) == (1, 0, 1)
        for waited in (10.0, 15.0, 15.0):  # 10 * 2**(n-1), capped at 15
            attempts = len(seen.calls)
            app.clock.advance(waited - 0.01)
            await app.join()
            assert (len(seen.calls), await delayed(app)) == (attempts, 1), "delivered early"
            app.clock.advance(0.02)
            await app.join()
            assert len(seen.calls) == attempts + 1
        assert (await app.info("app:dead"))["ready"] == 1
    assert [attempt for _, attempt, _ in seen.calls] == [1, 2, 3, 4]
    gaps = [b[2] - a[2] for a, b in zip(seen.calls, seen.calls[1:], strict=False)]
    assert gaps == pytest.approx([10.0, 15.0, 15.0], abs=0.02)


async def test_retry_waits_as_the_handler_says_and_logs_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relevo")
    queue = "  retry: {initial_delay: 1s, jitter: 0}\n"
    async with in_memory(app_yaml(tmp_path, queue)) as app:
        await app.publish("app:tasks", {"do": "retry", "after": "30s", "until": 2})
        await app.join()
        assert (len(seen.calls), await delayed(app)) == (1, 1)
        app.clock.advance(29.9)
        await app.join()
        assert (len(seen.calls), await delayed(app)) == (1, 1)
        app.clock.advance(0.2)
        await app.join()
        assert len(seen.calls) == 2
        assert (await app.info("app:tasks"))["message_count"] == 0
    records = [r for r in caplog.records if "retried in 30s" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_nack_with_a_delay_is_a_retry(tmp_path: Path) -> None:
    async with in_memory(app_yaml(tmp_path)) as app:
        await app.publish("app:tasks", {"do": "nack", "after": 5, "until": 2})
        await app.join()
        assert await delayed(app) == 1
        app.clock.advance(5.01)
        await app.join()
        assert len(seen.calls) == 2
    assert seen.calls[1][2] - seen.calls[0][2] == pytest.approx(5.0, abs=0.02)


async def test_a_returned_retry_waits_like_a_raised_one(tmp_path: Path) -> None:
    async with in_memory(app_yaml(tmp_path)) as app:
        await app.publish("app:tasks", {"do": "return_retry", "after": 7, "until": 2})
        await app.join()
        app.clock.advance(6.9)
        await app.join()
        assert (len(seen.calls), await delayed(app)) == (1, 1)
        app.clock.advance(0.2)
        await app.join()
        assert len(seen.calls) == 2


async def test_reject_dead_letters_at_once_with_its_reason(tmp_path: Path) -> None:
    queue = "  dead_letter: {queue: dead, max_attempts: 5}\n  retry: {}\n"
    async with in_memory(app_yaml(tmp_path, queue)) as app:
        message_id = await app.publish("app:tasks", {"do": "reject"})
        await app.join()
        dead = await app.peek("app:dead", 1)
        assert await delayed(app) == 0
    assert len(seen.calls) == 1
    assert dead[0]["id"] == message_id
    assert dead[0]["headers"]["x_dead_letter_reason"] == "bad input"


async def test_reject_without_dead_letter_drops_it_and_logs_an_error_with_id_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with in_memory(app_yaml(tmp_path, "  retry: {}\n")) as app:
        message_id = await app.publish("app:tasks", {"do": "reject"})
        await app.join()
        assert (await app.info("app:tasks"))["message_count"] == await delayed(app) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert message_id in errors[0]
    assert "bad input" in errors[0]


async def test_a_delayed_publish_waits_and_counts_as_delayed(tmp_path: Path) -> None:
    async with in_memory(app_yaml(tmp_path)) as app:
        await app.publish("app:tasks", {"n": 1}, delay="1m")
        later = datetime.fromtimestamp(app.clock.time(), UTC) + timedelta(seconds=90)
        await app.publish_batch("app:tasks", [{"n": 2}, {"n": 3}], at=later)
        await app.publish("app:tasks", {"n": 4}, at=app.clock.time() - 5)  # past: now
        await app.join()
        info = await app.info("app:tasks")
        assert (len(seen.calls), info["delayed"], info["message_count"]) == (1, 3, 0)
        app.clock.advance(60)
        await app.join()
        assert len(seen.calls) == 2
        app.clock.advance(30.01)  # a datetime holds microseconds: `later` may round up
        await app.join()
        assert (len(seen.calls), await delayed(app)) == (4, 0)
    assert [body["n"] for body, _, _ in seen.calls] == [4, 1, 2, 3]


@pytest.mark.parametrize(
    ("keywords", "complaint"),
    [({"delay": 5, "at": 10.0}, "not both"), ({"delay": -1}, "negative"),
     ({"delay": "soon"}, "expected a duration"),
     ({"at": datetime(2030, 1, 1)}, "no time zone"), ({"at": "tomorrow"}, "aware datetime")],
)
async def test_bad_delays_are_publish_errors(
    tmp_path: Path, keywords: dict[str, Any], complaint: str
) -> None:
    async with in_memory(app_yaml(tmp_path)) as app:
        with pytest.raises(PublishError, match=complaint):
            await app.publish("app:tasks", {}, **keywords)
        with pytest.raises(PublishError, match=complaint):
            await app.publish_batch("app:tasks", [{}], **keywords)
        assert (await app.info("app:tasks"))["delayed"] == 0


async def test_a_sync_handler_publishes_with_a_delay(tmp_path: Path) -> None:
    async with in_memory(app_yaml(tmp_path, handler="sync_forward")) as app:
        await app.publish("app:tasks", {"do": "forward", "after": "10s"})
        await app.join()
        assert await delayed(app) == 1
        app.clock.advance(10.01)
        await app.join()
        assert (await app.info("app:tasks"))["message_count"] == await delayed(app) == 0
    with pytest.raises(PublishError, match="negative"):
        relevo.publish_sync("app:tasks", {}, delay=-1)
