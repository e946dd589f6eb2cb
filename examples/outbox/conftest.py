"""The example's fixtures: its folder on the import path, a schema of its own for this
test run (dropped afterwards), and a PostgreSQL check (skipped without a server, failing
under CI)."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
# Before shop.py and app.yaml read it: the tests' tables never meet a real shop's.
os.environ["SHOP_SCHEMA"] = f"shop_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The DSN, once PostgreSQL answers; the test schema is dropped at the end."""
    import psycopg
    import shop

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1.0).close()
    except OSError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable ({exc}); CI must start it")
        pytest.skip(f"PostgreSQL is not reachable ({exc})")
    yield shop.DSN
    with psycopg.connect(shop.DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{shop.SCHEMA}" CASCADE')
