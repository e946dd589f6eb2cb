"""The pytest plugin of relevo (registered through the `pytest11` entry point).

    @pytest.mark.relevo_app("app.yaml")
    async def test_tasks_are_handled(relevo_app):
        await relevo_app.publish("app.queue:tasks", {"id": 1})
        await relevo_app.join()

The `relevo_app` fixture yields a started `in_memory` application built from the
marker's source (a path, a mapping or a list of mappings) and stops it after the test.
It is an async fixture: the test needs pytest-asyncio (or `asyncio_mode = "auto"`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

MARKER = "relevo_app"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(source): the application the relevo_app fixture starts in memory"
    )


async def _started_app(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    from relevo.testing import in_memory

    marker = request.node.get_closest_marker(MARKER)
    if marker is None or len(marker.args) != 1:
        pytest.fail(f"relevo_app needs @pytest.mark.{MARKER}(source) on the test")
    async with in_memory(marker.args[0]) as app:
        yield app


def _no_async_support() -> Any:
    pytest.fail("the relevo_app fixture is async: install pytest-asyncio")


relevo_app: Any
try:
    import pytest_asyncio
except ImportError:  # the fixture says what is missing when a test asks for it
    relevo_app = pytest.fixture(_no_async_support, name="relevo_app")
else:
    relevo_app = pytest_asyncio.fixture(_started_app, name="relevo_app")
