"""Entries relevo cannot read, and background tasks that die: the consumer goes on.

An entry another program adds to a queue (or one damaged) must take the failure path
of any message: nacked with a reason, retried, dead-lettered; without a dead letter it
is logged with its ID and removed. A background task of a consumer that dies is logged
at once, the consumer turns `failed`, and its supervisor restarts it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiormq.abc import ChannelFrame
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from redis.asyncio import Redis

import relevo
from relevo.drivers.redis.subscription import RedisSubscription
from tests.amqp_cleanup import delete_queues
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.integration import handlers
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    async with Redis.from_url(REDIS_URL) as client:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)


def redis_app(
    tmp_path: Path, prefix: str, *, dead_letter: bool, restart: str = "", claim_idle: str = "2s"
) -> Path:
    dead = "dead_letter: {queue: dead, max_attempts: 2}" if dead_letter else ""
    return write_app(tmp_path, f"""\
- name: broker
  kind: queue.driver.redis
  url: {REDIS_URL}
  key_prefix: '{prefix}'
  block: 100ms
  claim_idle: {claim_idle}
- name: tasks
  kind: queue.queue
  driver: broker
  {dead}
- name: dead
  kind: queue.queue
  driver: broker
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true, stop_timeout: 5s{restart}}}
""")


FOREIGN_ENTRIES = {
    "without relevo's fields": ({"order": "17", "status": "paid"}, "missing field 'i'"),
    "with headers that are not msgpack": ({"i": "m-1", "b": "{}", "h": b"\xc1"}, "malformed"),
    "without a body": ({"i": "m-2", "h": b"\x80"}, "missing field 'b'"),
}


@pytest.mark.parametrize(("fields", "reason"), FOREIGN_ENTRIES.values(), ids=list(FOREIGN_ENTRIES))
async def test_a_foreign_redis_entry_is_dead_lettered_and_later_messages_are_still_handled(
    tmp_path: Path, redis_prefix: str, fields: dict[str, Any], reason: str
) -> None:
    """Bug: an XADD by another program, without relevo's `i` field, raised KeyError in the
    stream reader; the reader task died unseen, the consumer stayed `running`, and no
    message published after it was ever handled."""
    async with relevo.load(redis_app(tmp_path, redis_prefix, dead_letter=True)) as app:
        async with Redis.from_url(REDIS_URL) as client:
            await client.xadd(f"{redis_prefix}tasks", fields)
            sent = await app.publish("app:tasks", {"n": 1})
            await wait_until(lambda: [c.id for c in handlers.state.calls] == [sent],
                             what="the message published after the foreign entry")

            async def dead_lettered() -> bool:
                return (await app.info("app:dead"))["message_count"] == 1

            await wait_until_async(dead_lettered, what="the foreign entry in the dead letters")
            [(_, stored)] = await client.xrange(f"{redis_prefix}dead")
        assert app.status("app:worker") == "running"
        assert await app.info("app:tasks") == {"message_count": 0, "ready": 0,
                                               "in_flight": 0, "consumer_count": 1,
                                               "delayed": 0}
    assert [c.id for c in handlers.state.calls] == [sent], "no handler saw the foreign entry"
    body = json.loads(stored[b"b"])
    assert body == {k: v.decode(errors="backslashreplace") if isinstance(v, bytes) else v
                    for k, v in fields.items() if k != "a"}
    headers = stored[b"h"]
    assert reason.encode() in headers
    assert b"unreadable entry" in headers


async def test_without_a_dead_letter_a_foreign_redis_entry_is_logged_with_its_id_and_removed(
    tmp_path: Path, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bug: a foreign entry killed the stream reader of a queue without a dead letter; now
    it is logged at ERROR with its entry ID and content, and the consumer goes on."""
    caplog.set_level(logging.WARNING, logger="relevo")
    async with relevo.load(redis_app(tmp_path, redis_prefix, dead_letter=False)) as app:
        async with Redis.from_url(REDIS_URL) as client:
            foreign_id = (await client.xadd(f"{redis_prefix}tasks", {"order": "17"})).decode()
            sent = await app.publish("app:tasks", {"n": 1})
            await wait_until(lambda: len(handlers.state.calls) == 1, what="the next message")

            async def emptied() -> bool:
                return await client.xlen(f"{redis_prefix}tasks") == 0

            await wait_until_async(emptied, what="the foreign entry to leave the stream")
        assert app.status("app:worker") == "running"
    assert handlers.state.calls[0].id == sent
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert foreign_id in errors[0]
    assert '"order": "17"' in errors[0]
    assert "missing field 'i'" in errors[0]


async def test_a_stream_reader_that_dies_is_logged_and_its_consumer_fails_and_restarts(
    tmp_path: Path, redis_prefix: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bug: a Redis reader task that died left no trace until shutdown ("Task exception
    was never retrieved") and its consumer reported `running` while it handled nothing."""
    caplog.set_level(logging.ERROR, logger="relevo")
    read = RedisSubscription._read
    crashes = [RuntimeError("a bug in the reader")]

    async def read_once_broken(self: RedisSubscription, cursor: bytes, *, block: bool) -> Any:
        if crashes:
            raise crashes.pop()
        return await read(self, cursor, block=block)

    monkeypatch.setattr(RedisSubscription, "_read", read_once_broken)
    path = redis_app(tmp_path, redis_prefix, dead_letter=False,
                     restart=", restart: {initial_delay: 1s, jitter: 0}")
    async with relevo.load(path) as app:
        await wait_until(lambda: app.status("app:worker") == "failed",
                         what="the consumer to turn failed")
        assert any("relevo-redis-read" in r.getMessage() and "a bug in the reader"
                   in r.getMessage() for r in caplog.records)
        await wait_until(lambda: app.status("app:worker") == "running",
                         what="the supervisor to restart the consumer")
        sent = await app.publish("app:tasks", {"n": 1})
        await wait_until(lambda: [c.id for c in handlers.state.calls] == [sent],
                         what="the restarted consumer to handle a message")


async def publish_without_message_id(channel: aiormq.Channel, queue: str, body: bytes) -> None:
    """What pika or a shell tool sends: aiormq's own basic_publish always adds an ID."""
    frames = [
        commands.Basic.Publish(exchange="", routing_key=queue),
        ContentHeader(body_size=len(body), properties=commands.Basic.Properties()),
        ContentBody(body),
    ]
    await channel.write_queue.put(
        ChannelFrame.marshall(frames=frames, channel_number=channel.number, drain_future=None)
    )


async def test_an_amqp_message_without_a_message_id_gets_one_that_it_keeps_across_nacks(
    tmp_path: Path,
) -> None:
    """Bug: a message another AMQP client published without `message_id` reached its
    handler with the ID "" (and kept no ID across redeliveries)."""
    require_service("rabbitmq", "127.0.0.1", 5672)
    folder = tmp_path
    name = f"foreign-{uuid.uuid4().hex[:10]}"
    path = write_app(folder, f"""\
- name: broker
  kind: queue.driver.amqp
  url: {AMQP_URL}
- name: tasks
  kind: queue.queue
  driver: broker
  queue_name: {name}
  driver_options: {{amqp: {{queue_expiry: 30s}}}}
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
""")
    try:
        async with relevo.load(path) as app:
            connection = await aiormq.connect(AMQP_URL)
            try:
                channel = await connection.channel()
                for body in ({"fail": True}, {"n": 2}):
                    await publish_without_message_id(channel, name, json.dumps(body).encode())
                await channel.basic_qos(prefetch_count=1)  # a round trip: the publishes are in
            finally:
                await connection.close()
            await wait_until(lambda: len(handlers.state.calls) >= 4, timeout_s=10,
                             what="the failing message twice more and the good one")
            await app.stop("app:worker")
    finally:
        await delete_queues([name])
    failing = [c for c in handlers.state.calls if c.body == {"fail": True}]
    good = [c for c in handlers.state.calls if c.body == {"n": 2}]
    assert good[0].id.startswith("amqp-")
    assert failing[0].id.startswith("amqp-")
    assert failing[0].id != good[0].id
    assert {c.id for c in failing} == {failing[0].id}
    assert [c.attempts for c in failing[:3]] == [1, 2, 3]


async def test_a_redis_entry_with_a_damaged_attempt_count_is_repaired_by_its_nack(
    tmp_path: Path, redis_prefix: str
) -> None:
    """A non-numeric `a` field made requeue.lua fail on `tonumber(nil) + 1`, so the nack of
    such an entry never landed and the entry stayed pending until reclaimed (here, not
    within the test: claim_idle is long)."""
    path = redis_app(tmp_path, redis_prefix, dead_letter=True, claim_idle="60s")
    async with relevo.load(path):
        async with Redis.from_url(REDIS_URL) as client:
            await client.xadd(f"{redis_prefix}tasks", {"i": "m-3", "b": '{"n": 3}', "a": "many"})
        await wait_until(lambda: len(handlers.state.calls) == 1, what="the repaired entry")
    call = handlers.state.calls[0]
    assert (call.id, call.body, call.attempts) == ("m-3", {"n": 3}, 2)
