"""The shop's code: placing an order (the order row and its message in one transaction)
and shipping it (the handler of the "order placed" messages).

The orders table lives in the same database and schema as relevo's queue tables, but
it is the shop's own: relevo never touches it.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql

import relevo

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SCHEMA = os.environ.get("SHOP_SCHEMA", "shop")
ORDERS = sql.Identifier(SCHEMA, "orders")


async def create_orders_table(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    await conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, customer text NOT NULL, "
        "cents integer NOT NULL CHECK (cents > 0), shipped boolean NOT NULL DEFAULT false)"
    ).format(ORDERS))


async def place_order(app: relevo.App, conn: psycopg.AsyncConnection[Any],
                      order: dict[str, Any]) -> str:
    """Store the order and publish "order placed" in one transaction: if the INSERT
    fails (a duplicate ID, a check) or anything after it raises, neither is kept, and
    no shipper ever hears of an order that does not exist. Returns the message ID."""
    async with conn.transaction():
        await conn.execute(
            sql.SQL("INSERT INTO {} (id, customer, cents) VALUES (%s, %s, %s)").format(ORDERS),
            (order["id"], order["customer"], order["cents"]),
        )
        return await app.publish("shop:order_placed", {"order": order["id"]}, connection=conn)


async def ship(event: dict[str, Any]) -> None:
    """Mark the order shipped. The row is always there: it was committed with the
    message. Shipping twice (a redelivery after a crash) changes nothing."""
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        cur = await conn.execute(
            sql.SQL("UPDATE {} SET shipped = true WHERE id = %s").format(ORDERS),
            (event["order"],),
        )
        if cur.rowcount != 1:
            raise relevo.Reject(f"order {event['order']!r} does not exist")
