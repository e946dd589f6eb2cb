"""Shared by the PostgreSQL driver tests: the server's DSN, and a unique schema per test
that is dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from relevo.drivers.postgres.driver import PostgresDriver
from relevo.drivers.postgres.settings import PostgresSettings
from tests.conftest import require_service

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

MakeDriver = Callable[..., Awaitable[PostgresDriver]]


def unique_schema() -> str:
    return f"relevo_test_{uuid.uuid4().hex[:12]}"


def settings(**overrides: Any) -> PostgresSettings:
    values: dict[str, Any] = {"dsn": POSTGRES_DSN, "schema": unique_schema(),
                              "claim_idle": 2.0, "publish_timeout": 5.0}
    return PostgresSettings.model_validate(values | overrides)


async def drop_schema(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def make_driver() -> AsyncIterator[MakeDriver]:
    """Started drivers sharing one schema (like processes sharing one database)."""
    require_service("postgres", "127.0.0.1", 5432)
    schema = unique_schema()
    made: list[PostgresDriver] = []

    async def make(**overrides: Any) -> PostgresDriver:
        made.append(PostgresDriver(settings(schema=schema, **overrides)))
        await made[-1].start()
        return made[-1]

    yield make
    for item in made:
        await item.stop()
    await drop_schema(schema)
