"""One pydantic model per entry kind (driver and function models live beside their code)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from relevo.drivers.catalog import DRIVER_KINDS
from relevo.durations import DurationS
from relevo.functions.catalog import FUNCTION_KINDS
from relevo.metrics.settings import PrometheusSettings
from relevo.schema import StrictModel


class Document(BaseModel):
    """The top of a config file."""

    version: str = "1.0"
    namespace: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    entries: list[dict[str, Any]] = []


class Restart(StrictModel):
    initial_delay: DurationS = 1.0
    max_delay: DurationS = 90.0
    backoff_factor: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    max_attempts: int = Field(default=0, ge=0)  # 0 = never give up


class Lifecycle(StrictModel):
    auto_start: bool = False
    depends_on: list[str] = []
    requires: list[str] = []
    start_timeout: DurationS = Field(default=10.0, gt=0)
    stop_timeout: DurationS = Field(default=10.0, ge=0)
    restart: Restart = Restart()


class EntryHead(StrictModel):
    """The fields every entry has, whatever its kind."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    meta: dict[str, Any] = {}
    lifecycle: Lifecycle = Lifecycle()


class DeadLetter(StrictModel):
    queue: str
    max_attempts: int = Field(default=3, ge=1)


class RetryPolicy(StrictModel):
    """`retry` of a queue: failed delivery n waits min(max_delay, initial_delay * factor**(n-1))."""

    initial_delay: DurationS = Field(default=1.0, ge=0.0)
    max_delay: DurationS = Field(default=300.0, ge=0.0)
    factor: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)


Codec = Literal["json/plain", "application/msgpack"]


class QueueSettings(StrictModel):
    """`queue.queue`."""

    driver: str
    queue_name: str | None = None
    codec: Codec = "json/plain"
    options: dict[str, Any] = {}
    driver_options: dict[str, dict[str, Any]] = {}
    dead_letter: DeadLetter | None = None
    retry: RetryPolicy | None = None


class ConsumerSettings(StrictModel):
    """`queue.consumer`."""

    queue: str
    func: str
    concurrency: int = Field(default=1, ge=1, le=1000)
    prefetch: int = Field(default=10, ge=1, le=10000)
    auto_ack: bool = False
    driver_options: dict[str, dict[str, Any]] = {}


KIND_MODELS: dict[str, type[BaseModel]] = {
    **{kind: spec.settings for kind, spec in DRIVER_KINDS.items()},
    "queue.queue": QueueSettings,
    "queue.consumer": ConsumerSettings,
    **{kind: spec.settings for kind, spec in FUNCTION_KINDS.items()},
    "metrics.prometheus": PrometheusSettings,
}
"""Every entry kind relevo knows, with the model of its kind-specific fields."""
