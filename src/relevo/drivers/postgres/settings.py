"""Config models of the PostgreSQL driver (no psycopg import here)."""

from __future__ import annotations

from pydantic import Field

from relevo.drivers.settings import DriverSettings
from relevo.durations import DurationS
from relevo.schema import StrictModel


class PostgresSettings(DriverSettings):
    """`queue.driver.postgres`."""

    dsn: str = "postgresql://localhost/postgres"
    schema_name: str = Field(
        default="relevo", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    claim_idle: DurationS = Field(default=30.0, gt=0)
    reconnect_delay: DurationS = Field(default=1.0, gt=0)
    reconnect_max_delay: DurationS = Field(default=30.0, gt=0)
    pool_size: int = Field(default=10, ge=2, le=1000)
    claim_batch: int = Field(default=100, ge=1, le=10000)
    """Most rows one claim statement takes. A consumer whose prefetch holds two batches
    or more claims the next while its handlers work through the last."""
    index_message_ids: bool = False
    """Build an index for peek(after=ID) and remove(ids), which otherwise read the
    queue's rows: for deep paging and requeues of large (dead-letter) queues. Every
    publish statement pays for it (see docs/drivers/postgres.md)."""


class PostgresQueueOptions(StrictModel):
    """`driver_options.postgres` of a queue."""

    max_length: int | None = Field(default=None, ge=1)


class PostgresConsumerOptions(StrictModel):
    """`driver_options.postgres` of a consumer: none yet."""
