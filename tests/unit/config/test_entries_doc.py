"""docs/entries.md must list exactly the fields of each model, with their defaults and ranges."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel

from relevo.config.models import (
    ConsumerSettings,
    DeadLetter,
    EntryHead,
    Lifecycle,
    QueueSettings,
    Restart,
    RetryPolicy,
)
from relevo.drivers.amqp.settings import AmqpConsumerOptions, AmqpQueueOptions, AmqpSettings
from relevo.drivers.memory_settings import MemoryQueueOptions, MemorySettings
from relevo.drivers.postgres.settings import PostgresQueueOptions, PostgresSettings
from relevo.drivers.redis.settings import RedisConsumerOptions, RedisQueueOptions, RedisSettings
from relevo.drivers.settings import TlsSettings
from relevo.durations import parse_duration_s
from relevo.functions.lua.settings import LuaSettings
from relevo.functions.python_settings import PythonSettings
from relevo.metrics.settings import PrometheusSettings

ROW = re.compile(r"\| `(\w+)` \| ([^|]*)\| ([^|]*)\|")
DOC = Path(__file__).resolve().parents[3] / "docs" / "entries.md"

SECTIONS: dict[str, type[BaseModel]] = {
    "every entry": EntryHead,
    "`lifecycle`": Lifecycle,
    "`lifecycle.restart`": Restart,
    "`queue.driver.memory`": MemorySettings,
    "`queue.driver.amqp`": AmqpSettings,
    "`queue.driver.redis`": RedisSettings,
    "`queue.driver.postgres`": PostgresSettings,
    "`tls`": TlsSettings,
    "`queue.queue`": QueueSettings,
    "`dead_letter`": DeadLetter,
    "`retry`": RetryPolicy,
    "`driver_options.memory` of a queue": MemoryQueueOptions,
    "`driver_options.amqp` of a queue": AmqpQueueOptions,
    "`driver_options.redis` of a queue": RedisQueueOptions,
    "`driver_options.postgres` of a queue": PostgresQueueOptions,
    "`queue.consumer`": ConsumerSettings,
    "`driver_options.amqp` of a consumer": AmqpConsumerOptions,
    "`driver_options.redis` of a consumer": RedisConsumerOptions,
    "`function.python`": PythonSettings,
    "`function.lua`": LuaSettings,
    "`metrics.prometheus`": PrometheusSettings,
}


def documented() -> dict[str, dict[str, tuple[str, str]]]:
    """section -> field -> (default text, range text)"""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line[4:].strip(), {})
        elif current is not None and (match := ROW.match(line)):
            current[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return sections


def expected_default(text: str) -> Any:
    if text in {"none", "disabled", "see below", "see `dead_letter`"}:
        return ...  # documented in words: only the field's presence is checked
    if text == "required":
        return "required"
    literal = text.strip("`")
    if literal in {"true", "false"}:
        return literal == "true"
    if literal in {"{}", "[]"}:
        return {"{}": {}, "[]": []}[literal]
    if re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h)", literal):
        return parse_duration_s(literal)
    if re.fullmatch(r"-?\d+", literal):
        return int(literal)
    if re.fullmatch(r"-?\d+\.\d+", literal):
        return float(literal)
    return literal


def config_names(model: type[BaseModel]) -> dict[str, str]:
    """Field names as written in config (aliases where a field has one) -> model names."""
    return {field.alias or name: name for name, field in model.model_fields.items()}


def test_every_model_has_a_section() -> None:
    assert set(SECTIONS) <= set(documented())


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_a_section_lists_exactly_its_models_fields(section: str) -> None:
    model = SECTIONS[section]
    assert set(documented()[section]) == set(config_names(model)), section


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_documented_defaults_and_ranges_match_the_model(section: str) -> None:
    model = SECTIONS[section]
    names = config_names(model)
    for name, (default_text, range_text) in documented()[section].items():
        field = model.model_fields[names[name]]
        wanted = expected_default(default_text)
        if wanted == "required":
            assert field.is_required(), f"{section}.{name} is not required"
        elif wanted is not ...:
            assert not field.is_required(), f"{section}.{name} is required"
            assert field.default == wanted, f"{section}.{name}: {field.default!r} != {wanted!r}"
        bounds = re.fullmatch(r"(-?[\d.]+)\.\.(inf|-?[\d.]+)", range_text)
        if bounds:
            low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
            high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
            assert low == float(bounds.group(1)), f"{section}.{name} lower bound"
            top = bounds.group(2)
            assert high == (None if top == "inf" else float(top)), f"{section}.{name} upper bound"
