"""The live status: rates from the pools' counts, queue counts from running queues only."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from relevo.status.sampler import Sampler
from relevo.status.view import line, table


class FakeApp:
    def __init__(self) -> None:
        self.queues = {"a:q": object(), "a:off": object()}
        self.counts = {"handled": 0, "failed": 0, "in_flight": 0}

    def activity(self) -> dict[str, dict[str, Any]]:
        return {"a:c": {"queue": "a:q", "status": "running", **self.counts}}

    def status(self, entry_id: str) -> str:
        return "stopped" if entry_id == "a:off" else "running"

    async def info(self, queue_id: str) -> dict[str, int]:
        return {"ready": 4, "in_flight": 1, "delayed": 2, "message_count": 5}


async def test_rates_are_the_counts_since_the_previous_sample_over_its_seconds() -> None:
    app = FakeApp()
    sampler = Sampler(app)
    await sampler.sample()
    app.counts = {"handled": 100, "failed": 10, "in_flight": 3}
    sample = await sampler.sample()
    row = sample.consumers[0]
    assert row.handled == 100
    assert row.in_flight == 3
    assert abs(row.failed_per_s * 10 - row.per_s) < 1e-6 * row.per_s
    assert row.per_s == 100 / sample.seconds


async def test_a_restarted_consumer_counts_from_zero_again_never_negative() -> None:
    app = FakeApp()
    sampler = Sampler(app)
    app.counts = {"handled": 100, "failed": 0, "in_flight": 0}
    await sampler.sample()
    app.counts = {"handled": 5, "failed": 0, "in_flight": 0}
    assert (await sampler.sample()).consumers[0].per_s > 0


async def test_a_queue_that_is_not_running_shows_no_counts() -> None:
    sample = await Sampler(FakeApp()).sample()
    by_id = {q.queue: q for q in sample.queues}
    assert (by_id["a:q"].ready, by_id["a:q"].delayed) == (4, 2)
    assert by_id["a:off"].ready is None
    assert "a:off" not in line(sample)
    console = Console(width=120, record=True)
    console.print(table(sample, "relevo run app.yaml"))
    text = console.export_text()
    assert "processed/s" in text
    assert "a:off" in text
