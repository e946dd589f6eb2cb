"""How to test a relevo application: a handler alone, the whole application in memory,
and the same test against a real Redis by changing one line."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orders
import pytest

import relevo
from relevo.testing import delivery, in_memory

APP = Path(__file__).with_name("app.yaml")
ORDER = {"id": "o-1", "customer": "ann", "cents": 1250}


@pytest.fixture(autouse=True)
def outbox(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each test starts with an empty outbox (the app shares the module the test patches)."""
    box: list[dict[str, Any]] = []
    monkeypatch.setattr(orders, "outbox", box)
    return box


class FlakyGateway:
    """Down for the first `outages` calls, then charges."""

    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.calls = 0

    def charge(self, customer: str, cents: int) -> str:
        self.calls += 1
        if self.calls <= self.outages:
            raise orders.GatewayDown("gateway timed out")
        return f"ch-{customer}-{cents}"


# -- a handler alone ----------------------------------------------------------------------

async def test_a_declined_card_is_rejected_at_once() -> None:
    with delivery({**ORDER, "cents": 0}), pytest.raises(relevo.Reject, match="nothing"):
        await orders.charge({**ORDER, "cents": 0})


async def test_a_receipt_lands_in_the_outbox(outbox: list[dict[str, Any]]) -> None:
    with delivery({"order": "o-1", "charge": "ch-1"}):
        await orders.send_receipt({"order": "o-1", "charge": "ch-1"})
    assert outbox == [{"order": "o-1", "charge": "ch-1"}]


# -- the whole application, in memory -----------------------------------------------------

@pytest.mark.relevo_app(APP)
async def test_an_order_is_charged_and_its_receipt_sent(
    relevo_app: relevo.App, outbox: list[dict[str, Any]]
) -> None:
    await relevo_app.publish("shop:orders", ORDER)
    await relevo_app.join()
    assert outbox == [{"order": "o-1", "charge": "ch-ann-1250"}]


async def test_a_gateway_outage_is_retried_with_backoff_until_it_passes(
    monkeypatch: pytest.MonkeyPatch, outbox: list[dict[str, Any]]
) -> None:
    gateway = FlakyGateway(outages=3)
    monkeypatch.setattr(orders, "gateway", gateway)
    async with in_memory(APP) as app:
        await app.publish("shop:orders", ORDER)
        await app.join()
        assert gateway.calls == 1
        for wait_s in (60, 120, 240):  # the queue's policy: 1 minute, doubling
            app.clock.advance(wait_s - 1)
            await app.join()
            assert outbox == [], "not before its time"
            app.clock.advance(1)
            await app.join()
        assert gateway.calls == 4
        assert outbox == [{"order": "o-1", "charge": "ch-ann-1250"}]


async def test_an_order_the_gateway_never_takes_is_dead_lettered_after_six_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(orders, "gateway", FlakyGateway(outages=100))
    async with in_memory(APP) as app:
        await app.publish("shop:orders", ORDER)
        for _ in range(6):
            await app.join()
            app.clock.advance(3600)  # an hour passes in no time
        await app.join()
        (dead,) = await app.peek("shop:orders_failed")
        assert dead["body"] == ORDER
        assert dead["headers"]["x_dead_letter_reason"] == "GatewayDown: gateway timed out"
        assert dead["attempts"] == 6


# -- the same test against a real Redis: one line changes ---------------------------------

async def test_an_order_is_charged_on_a_real_redis(
    redis_server: str, monkeypatch: pytest.MonkeyPatch, outbox: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv("SHOP_KEY_PREFIX", f"relevo-shop-{uuid.uuid4().hex}:")  # streams of its own
    app = relevo.load(APP)  # in memory, this line reads: app = in_memory(APP)
    async with app:
        await app.publish("shop:orders", ORDER)
        await app.join()
    assert outbox == [{"order": "o-1", "charge": "ch-ann-1250"}]

