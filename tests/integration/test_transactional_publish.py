"""`app.publish(..., connection=conn)`: a message stored inside the caller's own database
transaction exists if and only if that transaction commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import relevo
from relevo.errors import PublishError
from tests.appfiles import MEMORY_DRIVER, write_app
from tests.conftest import require_service
from tests.drivers.postgres_support import POSTGRES_DSN, drop_schema, unique_schema
from tests.integration import handlers
from tests.waiting import queue_holds, wait_until


@pytest.fixture
async def app_path(tmp_path: Path) -> AsyncIterator[Path]:
    require_service("postgres", "127.0.0.1", 5432)
    schema = unique_schema()
    yield write_app(tmp_path, f"""\
- name: db
  kind: queue.driver.postgres
  dsn: {POSTGRES_DSN}
  schema: {schema}
- name: orders
  kind: queue.queue
  driver: db
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: outbox
  kind: queue.queue
  driver: db
- name: forwarder
  kind: function.python
  handler: "tests.integration.test_transactional_publish:forward_in_a_transaction"
- name: forwarding
  kind: queue.queue
  driver: db
- name: forward_worker
  kind: queue.consumer
  queue: forwarding
  func: forwarder
  lifecycle: {{auto_start: true}}
- name: worker
  kind: queue.consumer
  queue: orders
  func: fn
  lifecycle: {{auto_start: true}}
""")
    await drop_schema(schema)


@pytest.mark.broker
async def test_a_message_published_in_a_committed_transaction_is_handled(
    app_path: Path,
) -> None:
    async with relevo.load(app_path) as app, \
            await psycopg.AsyncConnection.connect(POSTGRES_DSN) as conn:
        async with conn.transaction():
            await conn.execute("SELECT 1")  # the business write would go here
            message_id = await app.publish("app:orders", {"order": 1}, connection=conn)
            assert (await app.info("app:orders"))["message_count"] == 0, "seen before commit"
        await wait_until(lambda: len(handlers.state.calls) == 1, 10, "the order handled")
        await queue_holds(app, "app:orders", 0)
    assert [call.id for call in handlers.state.calls] == [message_id]


@pytest.mark.broker
async def test_a_message_published_in_a_rolled_back_transaction_never_exists(
    app_path: Path,
) -> None:
    async with relevo.load(app_path) as app, \
            await psycopg.AsyncConnection.connect(POSTGRES_DSN) as conn:
        async with conn.transaction(force_rollback=True):  # e.g. the payment was declined
            await app.publish_batch("app:orders", [{"order": 2}, {"order": 3}],
                                    connection=conn)
        await app.publish("app:orders", {"order": 4})  # a later message is handled...
        await wait_until(lambda: len(handlers.state.calls) == 1, 10, "order 4 handled")
        await queue_holds(app, "app:orders", 0)
    assert [call.body for call in handlers.state.calls] == [{"order": 4}]  # ...alone


async def forward_in_a_transaction(body: dict[str, Any]) -> None:
    """A handler that writes and publishes in one transaction of its own."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN) as conn, \
            conn.transaction(force_rollback=body["roll_back"]):
        await relevo.publish("app:outbox", body, connection=conn)


@pytest.mark.broker
async def test_a_handler_publishes_inside_its_own_transaction(app_path: Path) -> None:
    async with relevo.load(app_path) as app:
        await app.publish("app:forwarding", {"n": 1, "roll_back": True})
        await app.publish("app:forwarding", {"n": 2, "roll_back": False})
        await queue_holds(app, "app:forwarding", 0)
        assert [m["body"]["n"] for m in await app.peek("app:outbox")] == [2]


async def test_other_drivers_refuse_a_connection_with_publish_error(tmp_path: Path) -> None:
    path = write_app(tmp_path, MEMORY_DRIVER + """\
- name: tasks
  kind: queue.queue
  driver: mem
""")
    async with relevo.load(path) as app:
        with pytest.raises(PublishError, match=r"only queue\.driver\.postgres"):
            await app.publish("app:tasks", {}, connection=object())
