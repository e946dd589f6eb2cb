"""Reading and deleting ready entries without a consumer: peek, remove, purge.

A stream entry is ready when its ID is past the group's `last-delivered-id`: every entry
at or before it was delivered, and either acked away (XDEL) or still pending. So peek is
an XRANGE from there, which consumes nothing and counts no attempt.

Callers name messages by their relevo ID (the `i` field), not by stream entry ID. Peek
remembers the stream entry ID of each message it returned (a bounded map), so the next
page (`after`) and a remove of what was just shown cost one lookup; a message not in the
map (peeked by another process, or moved by a nack since) is found by `locate.lua`,
which scans the ready range inside Redis, `LOCATE_CHUNK` entries per call, and sends
back only the stream entry IDs it was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from relevo.drivers.redis.fields import ATTEMPTS, BODY, HEADERS, ID, decode_headers
from relevo.drivers.redis.scripts import LOCATE, REMOVE
from relevo.message import Envelope

SCAN_CHUNK = 1000
LOCATE_CHUNK = 5000  # entries locate.lua scans per call: a few milliseconds of Redis time
REMOVE_CHUNK = 500  # pairs per remove.lua call: keeps each atomic step short
_REMEMBERED_MAX = 200_000


class Inspector:
    """peek / remove / purge for the streams of one driver."""

    def __init__(self, client: Redis, group: str) -> None:
        self.client = client
        self.group = group
        self._where: dict[str, bytes] = {}  # message ID -> stream entry ID, from peeks

    async def peek(self, stream: str, limit: int, after: str | None) -> list[Envelope]:
        start = await self._last_delivered(stream)
        if after is not None:
            position = await self._locate(stream, start, {after})
            if after not in position:
                return []  # no longer ready: nothing sensible comes after it
            start = max(start, position[after], key=_entry_key)
        if limit <= 0:
            return []
        entries: Any = await self.client.xrange(stream, b"(" + start, b"+", count=limit)
        return [self._envelope(entry_id, fields) for entry_id, fields in entries]

    async def remove(self, stream: str, ids: Sequence[str]) -> int:
        wanted = set(ids)
        known = {m: self._where[m] for m in wanted if m in self._where}
        removed, missing = await self._remove(stream, known.items())
        unknown = (wanted - known.keys()) | missing
        if unknown:
            found = await self._locate(stream, await self._last_delivered(stream), unknown)
            more, _ = await self._remove(stream, found.items())
            removed += more
        return removed

    async def purge(self, stream: str) -> int:
        """Remove the ready entries that exist now; later publishes are left alone."""
        cursor = await self._last_delivered(stream)  # first: a missing stream raises here
        last: Any = await self.client.xrevrange(stream, b"+", b"-", count=1)
        if not last:
            return 0
        end = last[0][0]
        removed = 0
        while True:
            entries: Any = await self.client.xrange(stream, b"(" + cursor, end, count=SCAN_CHUNK)
            if not entries:
                return removed
            pairs = [(fields[ID].decode(), entry_id) for entry_id, fields in entries if fields]
            more, _ = await self._remove(stream, pairs)
            removed += more
            cursor = entries[-1][0]

    # -- helpers ------------------------------------------------------------------------

    async def _last_delivered(self, stream: str) -> bytes:
        groups: Any = await self.client.xinfo_groups(stream)
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                last = group["last-delivered-id"]
                return last if isinstance(last, bytes) else str(last).encode()
        return b"0-0"

    async def _locate(self, stream: str, start: bytes, ids: set[str]) -> dict[str, bytes]:
        """Stream entry IDs of these messages among the ready entries (remembered or scanned)."""
        found = {m: self._where[m] for m in ids if m in self._where}
        if len(found) == len(ids):
            return found
        cursor = start
        while len(found) < len(ids):
            missing = [m for m in ids if m not in found]
            reply = await LOCATE.run(
                self.client, [stream], [b"(" + cursor, LOCATE_CHUNK, *missing]
            )
            for i in range(2, len(reply), 2):
                message, entry_id = reply[i].decode(), reply[i + 1]
                found[message] = entry_id
                self._remember(message, entry_id)
            if int(reply[1]) < LOCATE_CHUNK:
                break  # reached the end of the stream
            cursor = reply[0]
        return found

    async def _remove(
        self, stream: str, pairs: Iterable[tuple[str, bytes]]
    ) -> tuple[int, set[str]]:
        items = list(pairs)
        removed, missing = 0, set[str]()
        for i in range(0, len(items), REMOVE_CHUNK):
            args: list[Any] = [self.group]
            for message, entry_id in items[i : i + REMOVE_CHUNK]:
                args += [entry_id, message]
            reply = await REMOVE.run(self.client, [stream], args)
            removed += int(reply[0])
            missing.update(m.decode() for m in reply[1:])
        for message, _ in items:
            self._where.pop(message, None)
        return removed, missing

    def _envelope(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Envelope:
        message = fields[ID].decode()
        self._remember(message, entry_id)
        raw_attempts = fields.get(ATTEMPTS)
        return Envelope(
            message,
            fields[BODY],
            decode_headers(fields.get(HEADERS)),
            int(raw_attempts) if raw_attempts else 0,
        )

    def _remember(self, message: str, entry_id: bytes) -> None:
        if len(self._where) >= _REMEMBERED_MAX:
            self._where.clear()  # a crude bound; a forgotten message is found by scanning
        self._where[message] = entry_id


def _entry_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)
