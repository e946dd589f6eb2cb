"""The parent-child channel: JSON lines dispatched on their type."""

from __future__ import annotations

import os
from typing import Any

from relevo.process import channel


async def test_messages_reach_their_handler_and_unknown_or_malformed_lines_are_skipped() -> None:
    read_fd, write_fd = os.pipe()
    sender = await channel.Sender.open(write_fd)
    reader = await channel.open_reader(read_fd)
    got: list[tuple[str, Any]] = []
    sender.send(channel.STATS, processed=7, rss=1024)
    sender.send("metrics", counters={"x": 1})  # a type this reader does not know
    sender._transport.write(b"not json\n")
    sender.send(channel.READY, pid=42)
    sender.close()

    async def on_ready(message: channel.Message) -> None:
        got.append(("ready", message["pid"]))

    await channel.dispatch(reader, {
        channel.STATS: lambda m: got.append(("stats", (m["processed"], m["rss"]))),
        channel.READY: on_ready,
    }, "test")  # returns at end of file
    assert got == [("stats", (7, 1024)), ("ready", 42)]


async def test_sending_to_a_closed_channel_says_so() -> None:
    read_fd, write_fd = os.pipe()
    sender = await channel.Sender.open(write_fd)
    sender.close()
    os.close(read_fd)
    assert sender.send(channel.STOP) is False
