"""The middleware seam: hooks around publish, around handling, on nack and on settlement."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import relevo
from relevo.message import Delivery, Disposition, Envelope, Failure
from relevo.middleware import ConsumerScope, Middleware, Settlement
from relevo.middleware.base import HandleNext, NackNext, PublishNext
from relevo.middleware.entries import ENTRY_MIDDLEWARES
from tests.integration import handlers
from tests.integration.test_pipeline import app_yaml
from tests.waiting import queue_holds, wait_until

span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)


class Recorder(Middleware):
    """Traces like a tracer would: stamps a header, opens a 'span' around each handler."""

    def __init__(self, name: str = "rec", log: list[str] | None = None) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.published: list[tuple[str, list[str], float | None]] = []
        self.settlements: list[tuple[str, str, Settlement]] = []

    async def publish(
        self, queue_id: str, envelopes: Sequence[Envelope], due: float | None,
        call_next: PublishNext,
    ) -> None:
        self.log.append(f"{self.name}:publish")
        for envelope in envelopes:
            envelope.headers = {**(envelope.headers or {}), "traceparent": "00-abc-01"}
        self.published.append((queue_id, [e.id for e in envelopes], due))
        await call_next(envelopes, due)

    async def handle(
        self, scope: ConsumerScope, delivery: Delivery, payload: Any, call_next: HandleNext
    ) -> Any:
        self.log.append(f"{self.name}:handle {scope.consumer_id} {scope.queue_id}")
        token = span.set(f"span of {delivery.header('traceparent')}")
        try:
            return await call_next(delivery, payload)
        finally:
            span.reset(token)
            self.log.append(f"{self.name}:handled")

    def settled(self, scope: ConsumerScope, delivery: Delivery, settlement: Settlement) -> None:
        self.settlements.append((scope.consumer_id, delivery.id, settlement))


async def test_a_publish_hook_adds_headers_that_the_handler_sees(tmp_path: Path) -> None:
    recorder = Recorder()
    async with relevo.load(app_yaml(tmp_path, "record"), middlewares=[recorder]) as app:
        first = await app.publish("app:tasks", {"id": 1}, headers={"k": "v"})
        batch = await app.publish_batch("app:tasks", [{"id": 2}, {"id": 3}])
        await wait_until(lambda: len(handlers.state.calls) == 3, what="three handled")
    assert recorder.published == [("app:tasks", [first], None), ("app:tasks", batch, None)]
    assert handlers.state.calls[0].headers == {"k": "v", "traceparent": "00-abc-01"}
    assert handlers.state.calls[2].headers == {"traceparent": "00-abc-01"}


seen_in_handlers: list[object] = []


def sync_span(body: Any) -> None:
    seen_in_handlers.append(span.get())


async def async_span(body: Any) -> None:
    seen_in_handlers.append(span.get())


async def hooks_of_delivery(body: Any) -> None:
    seen_in_handlers.append(relevo.message().hooks)


HERE = "tests.integration.test_middleware"


@pytest.mark.parametrize("handler", ["sync_span", "async_span"])
async def test_the_handler_runs_inside_the_handle_scope_even_in_a_thread(
    tmp_path: Path, handler: str
) -> None:
    seen_in_handlers.clear()
    recorder = Recorder()
    path = app_yaml(tmp_path, "record").read_text().replace(
        "tests.integration.handlers:record", f"{HERE}:{handler}"
    )
    (tmp_path / "app.yaml").write_text(path)
    async with relevo.load(tmp_path / "app.yaml", middlewares=[recorder]) as app:
        await app.publish("app:tasks", {"id": 1})
        await wait_until(lambda: "rec:handled" in recorder.log, what="the scope closed")
    assert seen_in_handlers == ["span of 00-abc-01"]
    assert recorder.log[1:] == ["rec:handle app:worker app:tasks", "rec:handled"]


async def test_settlement_hooks_see_ack_nack_and_dead_letter_with_reasons(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    queue = "  dead_letter: {queue: dead, max_attempts: 2}\n"
    path = app_yaml(tmp_path, "record", queue=queue)
    async with relevo.load(path, middlewares=[recorder]) as app:
        ok = await app.publish("app:tasks", {"id": 1})
        bad = await app.publish("app:tasks", {"id": 2, "fail": True})
        await wait_until(lambda: len(recorder.settlements) == 3, what="three settlements")
        await queue_holds(app, "app:dead", 1)
    by_id = [(message_id, s.disposition) for _, message_id, s in recorder.settlements]
    assert (ok, Disposition.ACK) in by_id
    assert [d for m, d in by_id if m == bad] == [Disposition.NACK, Disposition.DEAD_LETTER]
    dead = [s for _, m, s in recorder.settlements if s.disposition is Disposition.DEAD_LETTER]
    assert dead[0].reason == "ValueError: task 2 failed on purpose"
    assert {consumer for consumer, _, _ in recorder.settlements} == {"app:worker"}


class RejectEverything(Middleware):
    """A nack hook that changes the failure before the rest of the chain sees it."""

    def __init__(self) -> None:
        self.failures: list[Failure] = []

    def nack(
        self, scope: ConsumerScope, delivery: Delivery, failure: Failure, call_next: NackNext
    ) -> None:
        failure.reject = True
        failure.reason = f"rejected by policy ({failure.reason})"
        self.failures.append(failure)
        call_next(delivery, failure)


async def test_a_nack_hook_runs_before_dead_lettering_and_can_reject(tmp_path: Path) -> None:
    queue = "  dead_letter: {queue: dead, max_attempts: 5}\n"
    policy = RejectEverything()
    async with relevo.load(app_yaml(tmp_path, "record", queue=queue), middlewares=[policy]) as app:
        await app.publish("app:tasks", {"id": 1, "fail": True})
        await queue_holds(app, "app:dead", 1)
        await queue_holds(app, "app:tasks", 0)
    assert len(handlers.state.calls) == 1  # rejected: no second attempt despite max_attempts 5
    assert policy.failures[0].reason == "rejected by policy (ValueError: task 1 failed on purpose)"


async def test_middlewares_nest_with_the_first_one_outermost(tmp_path: Path) -> None:
    log: list[str] = []
    outer, inner = Recorder("outer", log), Recorder("inner", log)
    async with relevo.load(app_yaml(tmp_path, "record"), middlewares=[outer, inner]) as app:
        await app.publish("app:tasks", {"id": 1})
        await wait_until(lambda: len(log) == 6, what="six hook calls")
    assert log == [
        "outer:publish", "inner:publish",
        "outer:handle app:worker app:tasks", "inner:handle app:worker app:tasks",
        "inner:handled", "outer:handled",
    ]


async def test_a_consumer_without_middlewares_installs_no_hooks(tmp_path: Path) -> None:
    """Without middlewares a delivery settles straight with its driver: no chain per message."""
    seen_in_handlers.clear()
    path = app_yaml(tmp_path, "record").read_text().replace(
        "tests.integration.handlers:record", f"{HERE}:hooks_of_delivery"
    )
    (tmp_path / "app.yaml").write_text(path)
    async with relevo.load(tmp_path / "app.yaml") as app:
        await app.publish("app:tasks", {"id": 1})
        await wait_until(lambda: len(seen_in_handlers) == 1, what="handled")
        await queue_holds(app, "app:tasks", 0)
    assert seen_in_handlers == [None]


@pytest.fixture
def entry_kind_with_middleware() -> Iterator[Recorder]:
    recorder = Recorder("entry")
    ENTRY_MIDDLEWARES["queue.driver.memory"] = lambda entry_id, settings: recorder
    yield recorder
    del ENTRY_MIDDLEWARES["queue.driver.memory"]


async def test_an_entry_kind_can_bring_a_middleware_to_the_app(
    tmp_path: Path, entry_kind_with_middleware: Recorder
) -> None:
    async with relevo.load(app_yaml(tmp_path, "record")) as app:
        await app.publish("app:tasks", {"id": 1})
        await wait_until(lambda: len(entry_kind_with_middleware.settlements) == 1, what="ack")
    assert entry_kind_with_middleware.settlements[0][2] == Settlement(Disposition.ACK)
