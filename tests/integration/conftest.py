from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import handlers


@pytest.fixture(autouse=True)
def fresh_handler_state() -> Iterator[handlers.State]:
    handlers.reset()
    yield handlers.state
    handlers.state.gate.set()  # never leave a handler thread waiting
