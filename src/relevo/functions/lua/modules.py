"""The Python half of the Lua modules: what `host.*` calls in the bootstrap land on.

Calls that answer at once (json, logger, message) run directly from Lua. Calls that wait
(time.sleep, queue.publish, queue.info) are yielded to the caller of the handler, which
awaits them on the event loop (`serve`), so a waiting handler never blocks other workers.
Nothing here raises into Lua: failures come back as `nil, err` the Lua way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from relevo.context import current_delivery, runtime
from relevo.durations import parse_duration_s
from relevo.functions.lua.convert import Converter
from relevo.message import Delivery

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


class Host:
    """Host callables for one Lua state; `table()` is what the bootstrap receives."""

    def __init__(
        self, log: logging.Logger, modules: list[str], unsafe_libraries: list[str]
    ) -> None:
        self.log = log
        self.modules = modules
        self.unsafe_libraries = unsafe_libraries
        self.convert: Converter  # set once the bootstrap has returned its helpers

    def table(self, runtime: Any, limits: dict[str, Any]) -> Any:
        """`limits`: hook_every, max_blocking, max_blocking_label, timeout_label."""
        return runtime.table_from(
            {
                **limits,
                "monotonic": time.monotonic,
                "wall": time.time,
                "modules": runtime.table_from(self.modules),
                "unsafe_libraries": runtime.table_from(self.unsafe_libraries),
                "log": self.log_line,
                "json_decode": self.json_decode,
                "json_encode": self.json_encode,
                "msg_current": self.msg_current,
                "msg_id": self.msg_id,
                "msg_header": self.msg_header,
                "msg_headers": self.msg_headers,
                "msg_attempts": self.msg_attempts,
                "msg_settle": self.msg_settle,
            }
        )

    # logger ------------------------------------------------------------------------------
    def log_line(self, level: str, message: Any, fields: Any) -> None:
        number = _LEVELS.get(level, logging.INFO)
        if not self.log.isEnabledFor(number):
            return
        text = message if isinstance(message, str) else str(self.safe(message))
        extra: dict[str, Any] = {}
        if fields is not None:
            converted = self.safe(fields)
            if isinstance(converted, dict) and converted:
                text += " " + " ".join(f"{k}={_plain(v)}" for k, v in converted.items())
                extra["lua_fields"] = converted
            elif converted not in ({}, []):
                text += f" {_plain(converted)}"
        self.log.log(number, "%s", text, extra=extra)

    def safe(self, value: Any) -> Any:
        try:
            return self.convert.from_lua(value)
        except (TypeError, RecursionError, UnicodeDecodeError):
            return str(value)

    # json --------------------------------------------------------------------------------
    def json_decode(self, text: str) -> Any:
        try:
            return self.convert.to_lua(orjson.loads(text))
        except (orjson.JSONDecodeError, TypeError) as exc:
            return None, f"json.decode: {exc}"

    def json_encode(self, value: Any) -> Any:
        try:
            return orjson.dumps(self.convert.from_lua(value)).decode()
        except (TypeError, RecursionError, orjson.JSONEncodeError) as exc:
            return None, f"json.encode: {exc}"

    # queue.message() ---------------------------------------------------------------------
    def msg_current(self) -> Any:
        delivery = current_delivery.get()
        if delivery is None:
            return None, "queue.message() is only available inside a handler"
        return delivery

    def msg_id(self, delivery: Delivery) -> str:
        return delivery.id

    def msg_header(self, delivery: Delivery, key: Any) -> Any:
        return delivery.headers.get(key)

    def msg_headers(self, delivery: Delivery) -> Any:
        return self.convert.to_lua(dict(delivery.headers))

    def msg_attempts(self, delivery: Delivery) -> int:
        return delivery.attempts

    def msg_settle(self, delivery: Delivery, ack: bool) -> Any:
        done = delivery.ack() if ack else delivery.nack("nacked by Lua handler")
        return True if done else (False, "message already settled")


async def serve(convert: Converter, op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Run one wait a module yielded; the tuple is what the Lua call returns."""
    if op == "sleep":
        try:
            seconds = parse_duration_s(args[0] if args else None)
        except ValueError as exc:
            return False, f"time.sleep: {exc}"
        await asyncio.sleep(seconds)
        return (True,)
    if op == "publish":
        queue_id, data, headers = (*args, None, None, None)[:3]
        try:
            body = convert.from_lua(data)
            head = convert.from_lua(headers) if headers is not None else None
            if head is not None and not isinstance(head, dict):
                return None, "queue.publish: headers must be a table of name = value"
            await runtime().publish(str(queue_id), body, head)
        except Exception as exc:  # every failure is the Lua caller's `nil, err`
            return None, f"queue.publish: {exc}"
        return (True,)
    if op == "info":
        try:
            stats = await runtime().info(str(args[0] if args else None))
        except Exception as exc:
            return None, f"queue.info: {exc}"
        return (convert.to_lua(stats),)
    return None, f"unknown request {op!r}"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
