"""Deleting what a test created on the shared RabbitMQ: its queues and their delay ladders.

A queue that ever held a delayed message has a ladder (drivers/amqp/delays.py): durable
quorum wait queues and exchanges named `relevo.delay.<queue>.NN` that nothing expires.
Left behind by hundreds of test runs, they weigh on the broker, so every AMQP test
deletes its queues with their ladders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

import aiormq

from relevo.config.build import load_registry
from relevo.drivers.amqp import delays
from relevo.errors import ConfigError

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def delete_queues(names: Iterable[str], url: str = AMQP_URL) -> None:
    """Delete each queue and its delay ladder (queues that do not exist are skipped)."""
    names = sorted(set(names))
    if not names:
        return
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
            channel = await delete_ladder(connection, channel, name)
    finally:
        await connection.close()


async def delete_ladder(
    connection: aiormq.abc.AbstractConnection, channel: aiormq.abc.AbstractChannel, queue: str
) -> aiormq.abc.AbstractChannel:
    """Delete the ladder's levels (wait queue and exchange each), from 0 up to the first
    one missing; its 404 closes the channel, so a fresh one is returned."""
    for level in range(delays.LEVELS):
        name = delays.level_name(queue, level)
        try:
            await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
    return channel


def amqp_queues_of_apps(folder: Path) -> dict[str, set[str]]:
    """Broker URL -> names of the queues on AMQP drivers in the apps written under
    `folder` (every YAML file that loads; the others declared nothing)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.yaml")):
        with contextlib.suppress(ConfigError, OSError):
            registry = load_registry(path)
            for entry in registry.queues():
                driver = registry[entry.settings.driver]
                if driver.kind == "queue.driver.amqp":
                    name = entry.settings.queue_name or entry.id.split(":", 1)[1]
                    found.setdefault(driver.settings.url, set()).add(name)
    return found


async def delete_queues_of_apps(folder: Path) -> None:
    """Delete the AMQP queues (and ladders) of every app written under `folder`."""
    for url, names in amqp_queues_of_apps(folder).items():
        with contextlib.suppress(OSError, aiormq.exceptions.AMQPError):  # a broker not there
            await delete_queues(names, url)
