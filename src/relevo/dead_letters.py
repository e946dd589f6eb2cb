"""Looking into queues and sending dead letters home: peek as dicts, requeue, its report.

Requeue is a move, so it keeps the rule of every move: each message is stored in its
original queue (the driver's publish returns once the broker confirmed it) before it is
removed from the dead letters. A crash in between leaves a copy in both, never in neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from relevo.errors import QueueNotFound
from relevo.message import Envelope, Headers
from relevo.queue import Queue

log = logging.getLogger("relevo.dead_letter")

PAGE = 1000
"""Messages read, moved and removed per round: bounds memory whatever the queue's length."""

DEAD_LETTER_HEADERS = ("x_original_queue", "x_dead_letter_reason", "x_dead_letter_time")
"""Written when a message is dead-lettered; a requeued message leaves them (and the
`attempts` header written with them) behind."""

Resolve = Callable[[str], Awaitable[Queue | None]]
"""The running queue of an entry ID, or None when the application has no such queue."""


@dataclass
class RequeueReport:
    """What a requeue did: how many moved, and why each refused one stayed."""

    moved: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # message ID -> reason


def as_dict(queue: Queue, envelope: Envelope) -> dict[str, Any]:
    """A peeked message for people and JSON: body decoded, attempts as its next delivery's."""
    try:
        body = queue.codec.decode(envelope.body)
    except Exception:  # a body its codec cannot read is still shown, as text
        body = envelope.body.decode("utf-8", "replace")
    return {
        "id": envelope.id,
        "body": body,
        "headers": dict(envelope.headers or {}),
        "attempts": envelope.attempts + 1,
    }


async def peek(queue: Queue, limit: int, after: str | None) -> list[dict[str, Any]]:
    envelopes = await queue.driver.peek(queue.name, limit, after)
    return [as_dict(queue, envelope) for envelope in envelopes]


async def requeue(
    dead: Queue, resolve: Resolve, ids: Collection[str] | None = None,
    after: str | None = None,
) -> RequeueReport:
    """Move dead letters (all, or those in `ids`) back to their `x_original_queue`.

    With `ids=None` only the messages there when it starts are moved, so a handler that
    keeps failing cannot keep a requeue going for ever. `after` (with `ids`) is where to
    start looking, e.g. the cursor of the page they were shown on; what is not found
    behind it is looked for from the head.
    """
    report = RequeueReport()
    if ids is None:
        budget = (await dead.stats()).ready
        await _pages(dead, resolve, report, None, budget, None)
        return report
    wanted = set(ids)
    if after is not None:
        await _pages(dead, resolve, report, wanted, None, after)
    if wanted:
        await _pages(dead, resolve, report, wanted, None, None)
    for message_id in wanted:
        report.refused[message_id] = "not among the ready dead letters"
    return report


async def _pages(
    dead: Queue, resolve: Resolve, report: RequeueReport, wanted: set[str] | None,
    budget: int | None, cursor: str | None,
) -> None:
    """Page through the dead letters from `cursor`, moving all (up to `budget`) or the
    `wanted` ones (removed from the set as they are met)."""
    while (wanted is None or wanted) and (budget is None or budget > 0):
        limit = PAGE if budget is None else min(PAGE, budget)
        page = await dead.driver.peek(dead.name, limit, cursor)
        if not page:
            return
        if budget is not None:
            budget -= len(page)
        chosen = page if wanted is None else [e for e in page if e.id in wanted]
        if wanted is not None:
            wanted.difference_update(e.id for e in page)
        moved = await _move(dead, chosen, resolve, report)
        remaining = [e for e in page if e.id not in moved]
        if remaining:
            cursor = remaining[-1].id  # every message behind it in this page is gone


async def _move(
    dead: Queue, envelopes: list[Envelope], resolve: Resolve, report: RequeueReport
) -> set[str]:
    by_target: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        origin = (envelope.headers or {}).get("x_original_queue")
        if not isinstance(origin, str):
            report.refused[envelope.id] = "it has no x_original_queue header"
            continue
        by_target.setdefault(origin, []).append(envelope)
    moved: set[str] = set()
    for origin, group in by_target.items():
        target = await resolve(origin)
        if target is None:
            _refuse(report, group, f"its original queue {origin!r} no longer exists")
            continue
        try:
            await target.forward([_fresh(envelope) for envelope in group])
        except QueueNotFound as exc:
            _refuse(report, group, f"its original queue {origin!r} no longer exists ({exc})")
            continue
        ids = [envelope.id for envelope in group]
        await dead.driver.remove(dead.name, ids)  # only now: the copies are stored
        moved.update(ids)
        report.moved += len(ids)
    return moved


def _fresh(envelope: Envelope) -> Envelope:
    """The message as first published: same ID and headers, no dead-letter marks, attempt 1."""
    headers: Headers = {
        key: value
        for key, value in (envelope.headers or {}).items()
        if key not in DEAD_LETTER_HEADERS and key != "attempts"
    }
    return Envelope(envelope.id, envelope.body, headers or None, 0)


def _refuse(report: RequeueReport, group: list[Envelope], reason: str) -> None:
    for envelope in group:
        report.refused[envelope.id] = reason
    log.warning("not requeued: %d dead letter%s, because %s",
                len(group), "" if len(group) == 1 else "s", reason)
