"""When the parent recycles a child: past its message or memory mark, never in a loop."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from relevo.process.parent import Limits, Parent
from relevo.registry import Registry

MiB = 2**20


def child(**fields: Any) -> Any:
    defaults = {"slot": 1, "retiring": False, "checked": False, "memory_exempt": False,
                "processed": 0, "rss": 50 * MiB}
    return SimpleNamespace(**{**defaults, **fields})


async def parent(limits: Limits) -> Parent:
    found = Parent("app.yaml", Registry(), 1, limits=limits)
    found._recycle_due[1] = asyncio.Event()
    return found


async def test_a_child_past_its_message_mark_is_due_for_recycling() -> None:
    found = await parent(Limits(max_messages=100))
    found._check_limits(child(processed=99))
    assert not found._recycle_due[1].is_set()
    found._check_limits(child(processed=100))
    assert found._recycle_due[1].is_set()


async def test_a_child_over_the_memory_mark_after_it_started_is_due() -> None:
    found = await parent(Limits(max_memory=100 * MiB))
    grown = child()
    found._check_limits(grown)
    grown.rss = 120 * MiB
    found._check_limits(grown)
    assert found._recycle_due[1].is_set()


async def test_a_child_over_the_memory_mark_from_its_start_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A limit below what a fresh child uses would replace every replacement at once,
    forever; such a child is reported and not recycled for its memory."""
    found = await parent(Limits(max_memory=10 * MiB))
    fat = child(rss=60 * MiB)
    found._check_limits(fat)
    found._check_limits(fat)
    assert not found._recycle_due[1].is_set()
    assert "it will not be recycled for its memory" in caplog.text
