"""The example's fixtures: its folder on the import path, and a Redis check for the
test that runs against a real server (skipped without one, failing under CI)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


@pytest.fixture
def redis_server() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1.0).close()
    except OSError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable ({exc}); CI must start it")
        pytest.skip(f"Redis is not reachable ({exc})")
    return url
