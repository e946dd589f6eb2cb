"""The shop's handlers. The gateway and the outbox are module attributes, so a test
replaces them with `monkeypatch` (relevo uses this very module when a test imported it).
"""

from __future__ import annotations

from typing import Any

import relevo


class GatewayDown(Exception):
    """The payment gateway did not answer: worth trying again later."""


class Declined(Exception):
    """The card was declined: trying again will not help."""


class Gateway:
    """Stands in for a real payment client."""

    def charge(self, customer: str, cents: int) -> str:
        if cents <= 0:
            raise Declined(f"nothing to charge ({cents} cents)")
        return f"ch-{customer}-{cents}"


gateway = Gateway()
outbox: list[dict[str, Any]] = []  # receipts "sent"; a real shop would send mail


async def charge(order: dict[str, Any]) -> str:
    """Charge an order, then publish its receipt. Gateway outages retry with the queue's
    backoff (raise); a declined card goes to the dead letters at once."""
    try:
        charge_id = gateway.charge(order["customer"], order["cents"])
    except Declined as exc:
        raise relevo.Reject(str(exc)) from exc
    await relevo.publish("shop:receipts", {"order": order["id"], "charge": charge_id},
                         headers={"correlation_id": relevo.message().id})
    return charge_id


async def send_receipt(receipt: dict[str, Any]) -> None:
    outbox.append(receipt)
