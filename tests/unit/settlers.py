"""A settler that records outcomes instead of talking to a broker: unit tests of the
consumer side see exactly what it asked its driver to do."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from relevo.message import Delivery, Outcome


class RecordingSettler:
    """The driver side of one subscription, as a list of (id, outcome, due)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.outcomes: list[tuple[str, Outcome, float | None]] = []

    def settle(self, delivery: Delivery, outcome: Outcome, due: float | None = None) -> None:
        self.outcomes.append((delivery.id, outcome, due))

    def delivery(self, id: str, body: bytes = b"{}", attempts: int = 1,
                 **headers: Any) -> Delivery:
        return Delivery(self, id, body, dict(headers), attempts, tag=id)
