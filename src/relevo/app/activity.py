"""What an app's consumers are doing: their counts, and waiting until their queues are done.

Read from the supervisor each time, so a reload's new consumers count as soon as it
swaps them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from relevo.clock import Clock
from relevo.consumer.consumer import Consumer
from relevo.queue import Queue
from relevo.supervisor.supervisor import Supervisor

JOIN_POLL_S = 0.002


def consumers(supervisor: Supervisor) -> list[Consumer]:
    return [s.service for s in supervisor.services.values() if isinstance(s.service, Consumer)]


def consumed(supervisor: Supervisor) -> list[str]:
    """The queue IDs a running consumer reads, sorted."""
    return sorted({c.queue.entry_id for c in consumers(supervisor) if c.running})


def processed(supervisor: Supervisor) -> int:
    """Handler calls finished by the consumers (what process recycling counts)."""
    return sum(c.processed for c in consumers(supervisor))


def in_flight(supervisor: Supervisor) -> dict[str, int]:
    """Handler calls under way now, by consumer ID."""
    return {c.entry_id: c.activity()[2] for c in consumers(supervisor)}


def activity(supervisor: Supervisor) -> dict[str, dict[str, Any]]:
    """Each consumer's queue, status, and `handled`, `failed`, `in_flight` counts."""
    found = {}
    for consumer in consumers(supervisor):
        handled, failed, running = consumer.activity()
        found[consumer.entry_id] = {
            "queue": consumer.queue.entry_id,
            "status": supervisor.status(consumer.entry_id).value,
            "handled": handled, "failed": failed, "in_flight": running,
        }
    return found


async def join(
    supervisor: Supervisor, queues: Sequence[Queue], clock: Clock,
    timeout: float,  # noqa: ASYNC109 - App.join's documented parameter
) -> None:
    """Wait until no queue of `queues` has anything ready, in flight or delayed and due,
    and no handler of its consumers runs; TimeoutError (saying what is left) after
    `timeout` seconds."""
    left: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = await _unfinished(supervisor, queues, clock)
        if not left:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"join: after {timeout}s still {left}")
        await asyncio.sleep(JOIN_POLL_S)


async def _unfinished(
    supervisor: Supervisor, queues: Sequence[Queue], clock: Clock
) -> dict[str, Any]:
    """What each queue still holds or runs, by queue ID; empty once all is done."""
    left: dict[str, Any] = {}
    now = clock.time()
    for queue in queues:
        stats = await queue.stats()
        due = stats.next_due is not None and stats.next_due <= now
        busy = [c.entry_id for c in consumers(supervisor)
                if c.queue.entry_id == queue.entry_id and not c.idle]
        if stats.ready or stats.in_flight or due or busy:
            left[queue.entry_id] = {**stats.as_dict(), "due": due, "busy": busy}
    return left
