"""Commands on one queue of a broker: publish, info, peek, requeue, purge.

Each opens the app publish-only, acts on the queue, and closes it: no consumer starts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from relevo.app import App
from relevo.cli.exits import load_or_exit, run_or_exit
from relevo.errors import RelevoError


@click.command()
@click.argument("path", type=click.Path())
@click.argument("queue_id")
@click.argument("data")
@click.option("--header", "headers", multiple=True, metavar="K=V",
              help="A header; V is read as JSON when it parses (7, true, 0.5), else as text.")
@click.option("--count", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--delay", default=None, metavar="DURATION",
              help="Deliver no sooner than this from now: 30s, 5m, 1h or seconds.")
def publish(
    path: str, queue_id: str, data: str, headers: tuple[str, ...], count: int,
    delay: str | None,
) -> None:
    """Publish DATA (JSON) to QUEUE_ID, COUNT times. Never starts consumers."""
    try:
        body = json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="DATA") from exc
    header_map = dict(_header(h) for h in headers)
    target, ids = run_or_exit(_offline(
        path, queue_id, lambda app, q: app.publish_batch(
            q, [body] * count, header_map, delay=_seconds_or_text(delay)
        )
    ))
    if count == 1:
        click.echo(ids[0])
    else:
        click.echo(f"published {len(ids)} messages to {target}: first {ids[0]}, last {ids[-1]}")


@click.command()
@click.argument("path", type=click.Path())
@click.argument("queue_id")
def info(path: str, queue_id: str) -> None:
    """Print a queue's counts as JSON. Never creates the queue."""
    click.echo(json.dumps(run_or_exit(_offline(path, queue_id, App.info))[1]))


@click.command()
@click.argument("path", type=click.Path())
@click.argument("queue_id")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--after", default=None, metavar="ID", help="Start after this message ID.")
def peek(path: str, queue_id: str, limit: int, after: str | None) -> None:
    """Print a queue's ready messages as JSON lines, oldest first, consuming nothing."""
    _, messages = run_or_exit(
        _offline(path, queue_id, lambda app, q: app.peek(q, limit, after))
    )
    for message in messages:
        click.echo(json.dumps(message, ensure_ascii=False, default=str))


@click.command()
@click.argument("path", type=click.Path())
@click.argument("dead_letter_queue_id")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this message (repeatable).")
def requeue(path: str, dead_letter_queue_id: str, ids: tuple[str, ...]) -> None:
    """Move dead letters back to their original queues (all, or those given with --id)."""
    _, report = run_or_exit(_offline(
        path, dead_letter_queue_id, lambda app, q: app.requeue_report(q, ids or None)
    ))
    for message_id, reason in report.refused.items():
        click.echo(f"kept {message_id}: {reason}", err=True)
    click.echo(f"requeued {report.moved}")
    if report.refused:
        sys.exit(1)


@click.command()
@click.argument("path", type=click.Path())
@click.argument("queue_id")
@click.option("--yes", is_flag=True, help="Confirm: the messages are deleted for good.")
def purge(path: str, queue_id: str, yes: bool) -> None:
    """Delete every ready message of a queue (those in flight stay)."""
    if not yes:
        click.echo(f"refusing to purge {queue_id} without --yes", err=True)
        sys.exit(2)
    click.echo(f"purged {run_or_exit(_offline(path, queue_id, App.purge))[1]}")


QUEUE_COMMANDS = (publish, info, peek, requeue, purge)


async def _offline(
    path: str, queue: str, action: Callable[[App, str], Awaitable[Any]]
) -> tuple[str, Any]:
    """Run one action on a broker queue (QUEUE_ID, or a bare name one namespace has)
    with no consumer started; returns the queue's entry ID and the action's result."""
    app = load_or_exit(path)
    queue_id = app.queue_id(queue)
    driver = app.registry[app.registry[queue_id].settings.driver]
    if driver.kind == "queue.driver.memory":
        raise RelevoError(
            f"{queue_id} is on the memory driver {driver.id}: its messages live inside the "
            "process that runs the app, so a command cannot reach them. Use a broker "
            "driver (redis, amqp, postgres), or publish from the app's own code."
        )
    await app.open(start=False)
    try:
        return queue_id, await action(app, queue_id)
    finally:
        await app.close()


def _seconds_or_text(text: str | None) -> float | str | None:
    """'30' is 30 seconds, as a number is in config; '30s' stays a duration string."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def _header(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected K=V, got {text!r}", param_hint="--header")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if not isinstance(value, str | int | float | bool):
        value = raw
    return key, value
