"""One consumer in a stream's group: the names every part of a subscription calls Redis
with (reader, flusher, lease keeper), and giving that consumer's entries back."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from relevo.drivers.redis.scripts import REQUEUE
from relevo.drivers.redis.settings import RedisSettings

REQUEUE_BATCH = 500  # entry IDs per script call, so one call stays short


@dataclass(frozen=True, slots=True)
class Member:
    """A consumer name in the group of one queue's stream."""

    client: Redis
    settings: RedisSettings
    stream: str
    group: str
    consumer: str

    async def requeue(self, ids: list[bytes], bump: int) -> int:
        """Give entries this consumer still owns back to the stream, `bump` attempts more;
        how many it owned."""
        moved = 0
        for start in range(0, len(ids), REQUEUE_BATCH):
            moved += await REQUEUE.run(
                self.client, [self.stream],
                [self.group, self.consumer, bump, *ids[start : start + REQUEUE_BATCH]],
            )
        return moved
