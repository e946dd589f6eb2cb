"""The shop's promise: an order and its "order placed" message exist together or not
at all, and every stored order is shipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import shop
from psycopg import sql

import relevo

APP = Path(__file__).with_name("app.yaml")


@pytest.fixture
async def app(database: str) -> AsyncIterator[relevo.App]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await shop.create_orders_table(conn)
        await conn.execute(sql.SQL("TRUNCATE {}").format(shop.ORDERS))
    async with relevo.load(APP) as app:
        await app.purge("shop:order_placed_dead")  # each test counts its own dead letters
        yield app


@pytest.fixture
async def conn(database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        yield conn


async def orders(conn: psycopg.AsyncConnection[Any]) -> dict[str, bool]:
    """Every stored order: its ID and whether it was shipped."""
    async with conn.transaction():
        cur = await conn.execute(sql.SQL("SELECT id, shipped FROM {}").format(shop.ORDERS))
        return dict(await cur.fetchall())


async def test_a_placed_order_is_shipped(app: relevo.App,
                                         conn: psycopg.AsyncConnection[Any]) -> None:
    await shop.place_order(app, conn, {"id": "o-1", "customer": "ann", "cents": 1250})
    await app.join("shop:order_placed")
    assert await orders(conn) == {"o-1": True}


async def test_a_transaction_rolled_back_after_publishing_keeps_neither(
    app: relevo.App, conn: psycopg.AsyncConnection[Any]
) -> None:
    """The message was published inside the transaction that failed: it never existed,
    so the shipper never sees it (had it leaked, `ship` would reject it to the dead
    letters, for want of its order)."""
    async def place_then_fail() -> None:
        async with conn.transaction():
            await shop.place_order(app, conn, {"id": "o-2", "customer": "bo", "cents": 900})
            raise RuntimeError("payment refused after the order was placed")

    with pytest.raises(RuntimeError, match="payment"):
        await place_then_fail()
    await shop.place_order(app, conn, {"id": "o-3", "customer": "cy", "cents": 400})
    await app.join("shop:order_placed")
    assert await orders(conn) == {"o-3": True}
    assert (await app.info("shop:order_placed"))["message_count"] == 0
    assert (await app.info("shop:order_placed_dead"))["message_count"] == 0


async def test_an_order_the_database_refuses_publishes_nothing(
    app: relevo.App, conn: psycopg.AsyncConnection[Any]
) -> None:
    await shop.place_order(app, conn, {"id": "o-4", "customer": "di", "cents": 100})
    with pytest.raises(psycopg.errors.UniqueViolation):
        await shop.place_order(app, conn, {"id": "o-4", "customer": "di", "cents": 100})
    await app.join("shop:order_placed")
    assert await orders(conn) == {"o-4": True}
    assert (await app.info("shop:order_placed_dead"))["message_count"] == 0
