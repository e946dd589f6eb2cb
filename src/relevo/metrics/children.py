"""The parent's one endpoint with `--processes N`: the sum of its children's figures.

Each child sends its snapshot over the parent-child channel with its stats. Counters
and histograms are summed over the live children plus every child that has exited (its
last snapshot is kept), so they never go back when a child is recycled or restarted.
Gauges: `in_flight` and `entry_up` sum the live children; the queue counts come from
the freshest snapshot (every child reads the same queues, so summing would multiply).
"""

from __future__ import annotations

from typing import Any

from relevo.metrics.figures import Snapshot, merge

_COUNTED = ("published", "wait", "consumers", "reconnects")


class ChildrenFigures:
    def __init__(self) -> None:
        self.live: dict[Any, Snapshot] = {}
        self.retired: Snapshot = {}
        self.queues: dict[str, Any] = {}

    def update(self, child: Any, snapshot: Snapshot) -> None:
        self.live[child] = snapshot
        if snapshot.get("queues"):
            self.queues = snapshot["queues"]

    def retire(self, child: Any) -> None:
        """A child is gone: keep what it counted, forget its gauges."""
        last = self.live.pop(child, None)
        if last is None:
            return
        kept = {k: v for k, v in last.items() if k in _COUNTED}
        for consumer in kept.get("consumers", {}).values():
            consumer["in_flight"] = 0
        self.retired = merge([self.retired, kept])

    async def collect(self) -> Snapshot:
        live = [{k: v for k, v in s.items() if k != "queues"} for s in self.live.values()]
        total = merge([self.retired, *live])
        total["queues"] = self.queues
        return total
