"""Real broker crashes under load, with real `relevo run` consumers: nothing is lost, and
no more is handled twice than the consumers held when the broker went down."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.crashes import (
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

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_two_redis_crashes_under_load_lose_nothing_and_repeat_at_most_what_was_held(
    tmp_path: Path,
) -> None:
    """Regression: after a Redis restart (AOF, appendfsync always), entries whose acks the
    outage held back, and the leases of running handlers, were idle past claim_idle; the
    keepers reclaimed them by the hundred although each consumer held at most `prefetch`,
    and they were handled twice."""
    if not PrivateRedis.available():
        pytest.skip("needs redis-server to run a Redis of the test's own")
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    prefix = f"crash-{uuid.uuid4().hex[:8]}:"
    publisher = redis_publisher(redis.url, prefix)
    try:
        await publisher.start()
        rig = Rig(tmp_path / "app", redis_driver_entry(redis.url, prefix), "tasks")
        outcome = await measure(
            rig, publisher, messages=3000, rate=500,
            crashes=[(1.5, lambda: redis.crash(1.0)), (4.5, lambda: redis.crash(1.0))],
        )
    finally:
        await publisher.stop()
        redis.kill()
    assert outcome.lost == 0, f"{outcome}; logs: {outcome.logs}"
    assert outcome.duplicates <= outcome.bound, f"{outcome}; logs: {outcome.logs}"


@pytest.mark.timeout(480)  # its turn (up to 180 s), then a run bounded by 180 s itself
async def test_a_rabbitmq_restart_under_load_loses_nothing_and_repeats_at_most_what_was_held(
    tmp_path: Path,
) -> None:
    """stop_app / start_app drops every connection of the broker (other users' too, so it
    runs once, in this slow test): durable queues and persistent messages come back, and
    only unacked deliveries are handled again."""
    require_service("rabbitmq", "127.0.0.1", 5672)
    if not rabbitmqctl_available():
        pytest.skip("needs rabbitmqctl allowed to stop and start the local broker's app")
    publisher = amqp_publisher()
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    async with rabbitmq_restart_turn(180):  # no other suite restarts it during this run
        await publisher.start()
        try:
            rig = Rig(tmp_path / "app", amqp_driver_entry(), queue)
            outcome = await measure(
                rig, publisher, messages=3000, rate=500,
                crashes=[(2.0, lambda: restart_rabbitmq(1.0))], timeout_s=180,
            )
        finally:
            await delete_amqp_queue(queue)
            await publisher.stop()
    assert outcome.lost == 0, f"{outcome}; logs: {outcome.logs}"
    assert outcome.duplicates <= outcome.bound, f"{outcome}; logs: {outcome.logs}"
