"""Place orders from the command line, each with its message in one transaction:

    python examples/outbox/place.py 3          # three orders, then
    relevo run examples/outbox/app.yaml        # ships them

The last order fails after its message was published (a payment refused), and is
rolled back: neither it nor its message exists, and the shipper never sees it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import psycopg
import shop

import relevo


async def main(count: int) -> None:
    app = relevo.load(Path(__file__).with_name("app.yaml"))
    await app.open(start=False)  # publish-only: shipping is `relevo run`'s job
    try:
        async with await psycopg.AsyncConnection.connect(shop.DSN) as conn:
            await shop.create_orders_table(conn)
            await conn.commit()
            for n in range(count):
                order = {"id": f"o-{uuid.uuid4().hex[:8]}", "customer": "ann", "cents": 100 + n}
                print("placed", order["id"], "message", await shop.place_order(app, conn, order))
            try:
                async with conn.transaction():
                    await shop.place_order(app, conn, {"id": "o-refused", "customer": "bo",
                                                       "cents": 900})
                    raise RuntimeError("payment refused")
            except RuntimeError as exc:
                print("rolled back o-refused:", exc)
    finally:
        await app.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
