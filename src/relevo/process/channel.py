"""The parent-child channel: one JSON object per line over a pipe, each with a `type`.

Child to parent: `ready`, `failed` (start-up error), `stats` (processed, rss),
`reloaded`. Parent to child: `stop`, `reload`. A reader dispatches on `type` to a
handler table, so a new message type is one constant and one handler; a type a reader
does not know is logged and skipped, so either side may be newer than the other.
End of file means the other side is gone: a child treats it as its parent's death.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

log = logging.getLogger("relevo.process")

READY = "ready"
FAILED = "failed"
STATS = "stats"
RELOADED = "reloaded"
STOP = "stop"
RELOAD = "reload"

Message = dict[str, Any]
Handlers = Mapping[str, Callable[[Message], Awaitable[None] | None]]

_MAX_LINE = 16 * 1024 * 1024  # a metrics snapshot may be large; a runaway line is not


def encode(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields}) + b"\n"


class Sender:
    """The writing end of a pipe, owned by an event loop; writes never block it."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    @classmethod
    async def open(cls, fd: int) -> Sender:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(fd, "wb", 0))
        return cls(transport)

    def send(self, kind: str, **fields: Any) -> bool:
        """Queue one message; False when the other side is gone."""
        if self._transport.is_closing():
            return False
        self._transport.write(encode(kind, **fields))
        return True

    def close(self) -> None:
        self._transport.close()


async def open_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
    )
    return reader


async def dispatch(reader: asyncio.StreamReader, handlers: Handlers, label: str) -> None:
    """Read messages until end of file, calling `handlers[type](message)` for each."""
    while True:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError, ConnectionError) as exc:
            log.error("%s: unreadable channel: %r", label, exc)
            return
        if not line:
            return
        try:
            message = orjson.loads(line)
            kind = message["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("%s: skipped a malformed channel line: %r", label, line[:200])
            continue
        handler = handlers.get(kind)
        if handler is None:
            log.debug("%s: no handler for channel message %r", label, kind)
            continue
        result = handler(message)
        if result is not None:
            await result
