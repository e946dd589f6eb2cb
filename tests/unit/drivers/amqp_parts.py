"""Stand-ins for the AMQP driver's unit tests: a channel that records the frames sent on
it, and delivered messages built the way aiormq builds them."""

from __future__ import annotations

from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader


class Wire:
    """A channel that records its ack and nack frames; `drop()` makes it fail like a dead one."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []
        self.is_closed = False

    def drop(self) -> None:
        self.is_closed = True

    def _send(self, frame: tuple[str, int, bool]) -> None:
        if self.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
        self.frames.append(frame)

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self._send(("ack", tag, multiple))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        assert requeue, "relevo only ever nacks to requeue"
        self._send(("nack", tag, multiple))

    async def close(self) -> None:
        self.is_closed = True


def delivered(wire: Any, tag: int, body: bytes = b"{}", *, redelivered: bool = False,
              headers: dict[str, Any] | None = None) -> DeliveredMessage:
    """A message as `basic.consume` hands it over on `wire`."""
    deliver = Basic.Deliver(consumer_tag="c", delivery_tag=tag, redelivered=redelivered,
                            exchange="", routing_key="q")
    props = Basic.Properties(message_id=f"m{tag}", headers=headers or {}, delivery_mode=2)
    return DeliveredMessage(delivery=deliver, header=ContentHeader(0, len(body), props),
                            body=body, channel=wire)
